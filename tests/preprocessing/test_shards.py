"""End to end in one process: shards round-trip, manifest statuses, tar/webdataset/DALI readability,
resume giving byte-identical output."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import av
import pytest

from preprocessing.manifest import read_manifest
from preprocessing.plan import plan_shards
from preprocessing.run import finished_stats, prepare, preprocess, run_shard
from tests.preprocessing.conftest import BROKEN, EXPECTED_STATUS, FRAMES, config_for


def output_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def h264_run(broken_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("h264")
    cfg = config_for(broken_dataset, out)
    return cfg, preprocess(cfg), out


def decode(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as c:
        frames = list(c.decode(video=0))
    return len(frames), frames[0].width, frames[0].height


@pytest.mark.parametrize("codec", ["h264", "vp9", "mjpeg", "copy"])
def test_round_trip_every_codec(broken_dataset, tmp_path, codec):
    import webdataset as wds

    cfg = config_for(broken_dataset, tmp_path, codec=codec)
    summary = preprocess(cfg)
    classes = (tmp_path / "classes.txt").read_text().splitlines()
    assert classes == ["a", "b"]
    samples = list(wds.WebDataset([str(tmp_path / s) for s in summary["shards"]], shardshuffle=False,
                                  empty_check=False))
    assert len(samples) == summary["num_ok"] == 4
    for s in samples:
        meta = json.loads(s["json"])
        nframes, width, height = decode(s["mp4"])
        assert nframes == struct.unpack("<i", s["nframes"])[0] == meta["nframes"] == FRAMES
        expected = (40, 24) if codec == "copy" else (26, 16)
        assert (width, height) == (meta["width"], meta["height"]) == expected
        label = int(s["cls"])
        assert label == struct.unpack("<i", s["label"])[0] == meta["label"]
        assert classes[label] == meta["label_name"] == meta["source_id"].split("-")[1]
        assert "." not in s["__key__"]


def test_manifest_reports_every_row_with_its_status(h264_run):
    cfg, summary, out = h264_run
    manifest = {r["source_id"].split("_")[0]: r for r in read_manifest(out / "train-manifest.parquet")}
    assert len(manifest) == len(BROKEN)
    for label, yid, kind in BROKEN:
        row = manifest[yid]
        assert row["status"] == EXPECTED_STATUS[kind], (yid, row)
        assert row["label"] == label
        assert bool(row["error"]) == (kind != "ok")
        assert bool(row["shard"]) == (kind == "ok") and (row["nframes"] == FRAMES) == (kind == "ok")
    assert manifest["zerobytes01"]["error"].startswith("empty file")
    assert summary["status"] == {"corrupt": 3, "missing": 1, "ok": 4, "too_short": 1}
    assert summary["classes"]["a"] == {"missing": 1, "corrupt": 1, "ok": 2, "too_short": 1}
    on_disk = json.loads((out / "train-summary.json").read_text())
    assert on_disk == summary and on_disk["duration_s"] == pytest.approx(4 * FRAMES / cfg.fps)


def test_shards_are_valid_tars_with_fixed_headers_and_wds2idx_indices(h264_run, tmp_path):
    _, summary, out = h264_run
    for name in summary["shards"]:
        listing = subprocess.run(["tar", "-tvf", str(out / name)], capture_output=True, text=True,
                                 check=True).stdout
        assert ".mp4" in listing and ".cls" in listing
        with tarfile.open(out / name) as tar:
            assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in tar} == {(0, 0, 0, "", 0o644)}
        wds2idx = shutil.which("wds2idx")
        if wds2idx:  # the reference indexer shipped with DALI must agree byte for byte
            ref = tmp_path / "ref.idx"
            subprocess.run([wds2idx, str(out / name), str(ref)], capture_output=True, check=True)
            assert ref.read_text() == (out / name.replace(".tar", ".idx")).read_text()


def test_interrupted_run_resumes_to_byte_identical_output(broken_dataset, h264_run, tmp_path):
    _, _, reference = h264_run
    cfg = config_for(broken_dataset, tmp_path)
    assert preprocess(cfg, max_shards=1) == {}  # "interrupted" after the first shard
    # ... and killed while writing the second: a half-written temporary tar is left behind.
    prepared = prepare(cfg)
    (tmp_path / f"{prepared.tasks[1].name}.tar.tmp").write_bytes(b"\0" * 1000)
    first = tmp_path / f"{prepared.tasks[0].name}.stats.json"
    mtime = first.stat().st_mtime_ns
    preprocess(cfg)
    assert first.stat().st_mtime_ns == mtime  # the finished shard was skipped, not rewritten
    assert output_bytes(tmp_path) == output_bytes(reference)


def test_stale_or_inconsistent_markers_are_redone(broken_dataset, h264_run, tmp_path):
    cfg = config_for(broken_dataset, tmp_path)
    preprocess(cfg)
    task = next(t for t in prepare(cfg).tasks if finished_stats(t)["tar"])
    assert finished_stats(task) is not None
    (tmp_path / f"{task.name}.tar").write_bytes(b"garbage")  # tar no longer matches its marker
    assert finished_stats(task) is None
    other = replace(task, settings=replace(task.settings, crf=30))  # other settings, other bytes
    assert finished_stats(other) is None
    run_shard(task)
    assert output_bytes(tmp_path) == output_bytes(h264_run[2])


def test_plan_is_independent_of_row_order(broken_dataset, tmp_path):
    cfg = config_for(broken_dataset, tmp_path)
    prepared = prepare(cfg)
    from preprocessing.annotations import read_kinetics

    rows, classes = read_kinetics(cfg.annotations, cfg.videos, "train")
    again, skipped = plan_shards(list(reversed(rows)), classes, output=cfg.output, split="train",
                                 settings=prepared.tasks[0].settings, max_samples=2,
                                 max_bytes=cfg.max_shard_bytes)
    assert again == prepared.tasks and skipped == prepared.skipped


def test_bad_arguments_are_rejected_with_clear_errors(broken_dataset, tmp_path):
    from pipeline.config import load_config

    with pytest.raises(ValueError, match="preprocess.codec='av1'.*h264"):
        load_config("debug", ["preprocess.codec=av1"])
    with pytest.raises(ValueError, match="short_side"):
        load_config("debug", ["preprocess.short_side=8"])
    with pytest.raises(ValueError, match="split"):
        load_config("debug", ["preprocess.split=tr.ain"])
    with pytest.raises(ValueError, match="annotations"):
        prepare(config_for(broken_dataset, tmp_path, annotations=str(tmp_path / "none.csv")))
    with pytest.raises(ValueError, match="no rows for split 'val'"):
        prepare(config_for(broken_dataset, tmp_path, split="val"))
    with pytest.raises(ValueError, match="videos"):
        prepare(config_for(broken_dataset, tmp_path, videos=""))
    (tmp_path / "classes.txt").write_text("x\ny\n")  # another dataset's class list
    with pytest.raises(ValueError, match="lacks labels"):
        prepare(config_for(broken_dataset, tmp_path))


def test_shards_are_cut_by_source_bytes(broken_dataset, tmp_path):
    cfg = config_for(broken_dataset, tmp_path, max_shard_samples=100, max_shard_bytes=1024)
    tasks = prepare(cfg).tasks
    assert all(len(t.rows) == 1 or sum(r.src_bytes for r in t.rows) <= 1024 for t in tasks)
    assert len(tasks) == sum(len(t.rows) for t in tasks)  # every source is over 1 KiB here


def test_non_ascii_and_quoted_labels_survive_into_shards(broken_dataset, tmp_path):
    import csv

    import webdataset as wds

    good = sorted(broken_dataset["videos"].rglob("good-*.mp4"))
    labels = ["tanzen \u00fc", '"quoted, label"', "\u8df3\u821e", "tanzen \u00fc"]
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([str(p), label] for p, label in zip(good, labels))
    cfg = config_for(broken_dataset, tmp_path / "out", format="csv",
                     annotations=str(tmp_path / "in.csv"), videos="")
    summary = preprocess(cfg)
    classes = (tmp_path / "out" / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert classes == sorted(set(labels)) and summary["num_ok"] == 4
    names = set()
    for s in wds.WebDataset([str(tmp_path / "out" / n) for n in summary["shards"]],
                            shardshuffle=False, empty_check=False):
        meta = json.loads(s["json"].decode("utf-8"))
        assert classes[int(s["cls"])] == meta["label_name"]
        names.add(meta["label_name"])
    assert names == set(labels)
