"""The generated demo dataset: deterministic, Kinetics-readable, classes that differ in time."""

from __future__ import annotations


import av
import numpy as np
import pytest

from preprocessing.annotations import read_kinetics
from preprocessing.demo_data import CLASSES, make_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(out, num_train_per_class=3, num_val_per_class=1, seed=7, size=48,
                             fps=15, seconds=1)


def frames_of(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)])


def test_demo_dataset_is_readable_as_kinetics(demo):
    train, classes = read_kinetics(demo["train_csv"], demo["videos"], "train")
    val, _ = read_kinetics(demo["val_csv"], demo["videos"], "val")
    assert classes == sorted(CLASSES) == demo["classes"].read_text().splitlines()
    assert len(train) == 12 and len(val) == 4 and all(r.path for r in train + val)
    with av.open(train[0].path) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.width, s.height, s.frames) == ("h264", 48, 48, 15)


def test_demo_dataset_is_deterministic_for_a_seed(demo, tmp_path):
    again = make_demo_dataset(tmp_path, num_train_per_class=3, num_val_per_class=1, seed=7, size=48,
                              fps=15, seconds=1)
    other = make_demo_dataset(tmp_path / "other", num_train_per_class=3, num_val_per_class=1,
                              seed=8, size=48, fps=15, seconds=1)
    for path in sorted(demo["videos"].rglob("*.mp4")):
        rel = path.relative_to(demo["videos"])
        assert (again["videos"] / rel).read_bytes() == path.read_bytes()
        assert (other["videos"] / rel).read_bytes() != path.read_bytes()
    assert again["train_csv"].read_text() == demo["train_csv"].read_text()


def test_demo_classes_differ_in_temporal_change(demo):
    """Mean absolute frame difference: still < slow < fast, and flicker changes a lot."""
    rows, _ = read_kinetics(demo["train_csv"], demo["videos"], "train")
    change = {c: [] for c in CLASSES}
    for row in rows:
        f = frames_of(row.path)
        change[row.label].append(np.abs(np.diff(f, axis=0)).mean())
    mean = {c: float(np.mean(v)) for c, v in change.items()}
    assert mean["still"] < mean["slow"] < mean["fast"]
    assert mean["flicker"] > 2 * mean["still"]


def test_bad_demo_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_demo_dataset(tmp_path, size=31)
    with pytest.raises(ValueError, match="num_train_per_class"):
        make_demo_dataset(tmp_path, num_train_per_class=0)
