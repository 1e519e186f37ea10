"""Fixtures for the job tests: a tiny generated dataset sharded once per session."""

import dataclasses

import pytest

from pipeline.config import get_preset


@pytest.fixture(scope="session")
def debug_shards(tmp_path_factory):
    """Real H.264 videos of the 4 demo classes, sharded like the demo (train and val)."""
    from preprocessing.demo_data import make_demo_dataset
    from preprocessing.run import preprocess

    root = tmp_path_factory.mktemp("debug-data")
    paths = make_demo_dataset(root, num_train_per_class=4, num_val_per_class=2, seed=0, size=32,
                              fps=15.0, seconds=1.0)
    base = get_preset("debug").preprocess
    for split in ("train", "val"):
        preprocess(dataclasses.replace(base, annotations=str(paths[f"{split}_csv"]),
                                       videos=str(paths["videos"]), split=split,
                                       output=str(root / "shards"), short_side=32))
    return root / "shards"
