"""Annotation readers: Kinetics (flat / per-class, quoting, non-ASCII), Mini-Kinetics, Moments, CSV."""

from __future__ import annotations

import pytest

from preprocessing.annotations import (read_annotations, read_class_index, read_class_list,
                                       read_kinetics, read_mini_kinetics, read_moments,
                                       read_path_label_csv, write_class_list)

LABELS = ["playing guitar, electric", "tanzen \u00fc", "\u8df3\u821e", 'say "hi"']


def test_kinetics_csv_with_quoted_fields_and_non_ascii_labels(tmp_path):
    csv_text = (
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"playing guitar, electric",-Qhiiw9yJvc,825,835,train,0\n'
        "tanzen \u00fc,abc_DEF-123,0,10,train,1\n"
        "\u8df3\u821e,zzz,5,15,train,0\n"
        '"say ""hi""",qqq,1,11,val,0\n'
    )
    (tmp_path / "k.csv").write_text(csv_text, encoding="utf-8")
    videos = tmp_path / "videos"
    (videos / "tanzen \u00fc").mkdir(parents=True)
    (videos / "-Qhiiw9yJvc_000825_000835.mp4").write_bytes(b"x")  # flat
    (videos / "tanzen \u00fc" / "abc_DEF-123_000000_000010.mp4").write_bytes(b"x")  # per class
    (videos / "qqq.mkv").write_bytes(b"x")  # named by the bare YouTube id, another container
    rows, classes = read_kinetics(tmp_path / "k.csv", videos, split="train")
    assert classes == sorted(LABELS)  # the whole CSV, so train and val share the list
    assert [r.label for r in rows] == LABELS[:3]
    assert rows[0].source_id == "-Qhiiw9yJvc_000825_000835" and rows[0].path.endswith(".mp4")
    assert rows[1].path is not None and rows[2].path is None  # zzz is missing
    val, _ = read_kinetics(tmp_path / "k.csv", videos, split="validate")  # K400 `validate` == val
    assert [r.label for r in val] == ['say "hi"'] and val[0].path.endswith("qqq.mkv")


def test_kinetics_rejects_a_csv_without_its_columns(tmp_path):
    (tmp_path / "k.csv").write_text("path,label\na.mp4,x\n")
    (tmp_path / "v").mkdir()
    with pytest.raises(ValueError, match="not a Kinetics CSV"):
        read_kinetics(tmp_path / "k.csv", tmp_path / "v")


def test_mini_kinetics_applies_the_id_list_to_kinetics400(tmp_path):
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                    "a,id1,0,10,train\nb,id2,0,10,train\nc,id3,0,10,train\n")
    (tmp_path / "ids.txt").write_text("id1\nid3_000000_000010.mp4\n")
    (tmp_path / "v").mkdir()
    rows, classes = read_mini_kinetics(tmp_path / "k.csv", tmp_path / "ids.txt", tmp_path / "v", "train")
    assert [r.source_id for r in rows] == ["id1_000000_000010", "id3_000000_000010"]
    assert classes == ["a", "c"]


def test_moments_without_header_takes_the_class_order_of_its_categories(tmp_path):
    (tmp_path / "trainingSet.csv").write_text(
        "zooming/yt-1.mp4,zooming,3,0\n\"a, b\"/x.mp4,\"a, b\",3,1\n", encoding="utf-8")
    (tmp_path / "moments_categories.txt").write_text("zooming,0\n\"a, b\",1\n")
    (tmp_path / "v" / "zooming").mkdir(parents=True)
    (tmp_path / "v" / "zooming" / "yt-1.mp4").write_bytes(b"x")
    rows, classes = read_moments(tmp_path, tmp_path / "v", "train")
    assert classes == ["zooming", "a, b"]
    assert [(r.source_id, r.label, r.path is not None) for r in rows] == [
        ("zooming/yt-1.mp4", "zooming", True), ("a, b/x.mp4", "a, b", False)]
    with pytest.raises(ValueError, match="split"):
        read_moments(tmp_path, tmp_path / "v", "test")


def test_plain_path_label_csv_with_header_and_quotes(tmp_path):
    (tmp_path / "l.csv").write_text('path,label\n"dir, 1/a.mp4",\u00e9t\u00e9\nb.mp4,"x,y"\n',
                                    encoding="utf-8")
    (tmp_path / "dir, 1").mkdir()
    (tmp_path / "dir, 1" / "a.mp4").write_bytes(b"x")
    rows, classes = read_path_label_csv(tmp_path / "l.csv")
    assert classes == ["x,y", "\u00e9t\u00e9"]
    assert rows[0].path is not None and rows[1].path is None


def test_class_list_round_trips_non_ascii_names(tmp_path):
    write_class_list(tmp_path / "classes.txt", sorted(LABELS))
    assert read_class_list(tmp_path / "classes.txt") == sorted(LABELS)
    assert read_class_index(tmp_path / "classes.txt") == sorted(LABELS)
    with pytest.raises(ValueError):
        write_class_list(tmp_path / "bad.txt", ["a\nb"])


def test_bad_annotation_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        read_annotations("kinetics", "", "", "train")
    with pytest.raises(ValueError, match="do not exist"):
        read_annotations("kinetics", str(tmp_path / "nope.csv"), "", "train")
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end\n")
    with pytest.raises(ValueError, match="subset"):
        read_annotations("mini_kinetics", str(tmp_path / "k.csv"), str(tmp_path), "train")
    with pytest.raises(ValueError, match="videos folder"):
        read_annotations("kinetics", str(tmp_path / "k.csv"), str(tmp_path / "none"), "train")
