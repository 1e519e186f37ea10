"""Shard files: fixed tar headers, a `.idx` that points at each member's bytes, safe sample keys."""

from __future__ import annotations

import importlib.util
import struct
import tarfile

import pytest

from pipeline.media.shards import FIELDS, TarWriter, idx_text, sample_key, sample_members

# Sizes around the 512-byte tar block, where the offset arithmetic could slip.
MEMBERS = [(f"s{i // 5}.{ext}", bytes([i]) * size)
           for i, (ext, size) in enumerate(zip(FIELDS * 2, (0, 1, 511, 512, 513, 1024, 7, 3000, 4, 4)))]


def write(path):
    writer = TarWriter(path)
    for name, data in MEMBERS:
        writer.add(name, data)
    writer.close()
    return writer


def test_tar_members_have_fixed_headers(tmp_path):
    write(tmp_path / "a-000000.tar")
    with tarfile.open(tmp_path / "a-000000.tar") as tar:
        members = tar.getmembers()
        assert [(m.name, tar.extractfile(m).read()) for m in members] == MEMBERS
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, 0, "", "", 0o644)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-000000.idx", "a-000000.tar"]


def test_same_members_give_the_same_bytes(tmp_path):
    write(tmp_path / "a.tar")
    write(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_idx_text_matches_the_member_offsets_read_back_with_tarfile(tmp_path):
    writer = write(tmp_path / "a-000000.tar")
    with tarfile.open(writer.path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar]
    assert writer.index == expected
    lines = writer.idx.read_text().splitlines()
    assert lines[0] == "v1.2 2" and writer.idx.read_text() == idx_text(expected)
    for line, key in zip(lines[1:], ("s0", "s1")):
        parts = line.split()
        entries = [tuple(parts[i:i + 4]) for i in range(0, len(parts), 4)]
        assert entries == [(n.split(".")[1], str(o), str(s), n) for n, o, s in expected
                           if n.startswith(key + ".")]


@pytest.mark.dali
def test_idx_agrees_with_dalis_wds2idx(tmp_path):
    if importlib.util.find_spec("wds2idx") is None:
        pytest.skip("wds2idx ships with nvidia-dali")
    from wds2idx import IndexCreator

    writer = write(tmp_path / "a-000000.tar")
    with IndexCreator(str(writer.path), str(tmp_path / "ref.idx"), verbose=False) as creator:
        creator.create_index()
    assert (tmp_path / "ref.idx").read_text() == writer.idx.read_text()


def test_abort_leaves_no_file(tmp_path):
    writer = TarWriter(tmp_path / "a.tar")
    writer.add(*MEMBERS[0])
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_sample_members_are_in_field_order_with_raw_int32s():
    members = dict(sample_members("k", label=3, video=b"mp4", meta={"nframes": 9, "b": 1, "a": 2}))
    assert list(members) == [f"k.{ext}" for ext in FIELDS]
    assert members["k.cls"] == b"3" and members["k.mp4"] == b"mp4"
    assert struct.unpack("<i", members["k.label"]) == (3,)
    assert struct.unpack("<i", members["k.nframes"]) == (9,)
    assert members["k.json"] == b'{"a": 2, "b": 1, "nframes": 9}'


def test_sample_keys_are_dot_free_and_distinct():
    ids = ["-Qhiiw9yJvc_000825_000835", "zooming/yt-1.mp4", "zooming_yt-1", "a.b.c", "x" * 200,
           "\u8df3\u821e/1.mp4", "\u8df3\u821e/2.mp4"]
    keys = [sample_key(i) for i in ids]
    assert keys[0] == ids[0]  # safe ids are kept as they are
    assert all("." not in k and "/" not in k and len(k) <= 80 for k in keys)
    assert len(set(keys)) == len(keys)
