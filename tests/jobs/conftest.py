"""Fixtures for the job tests: a tiny generated dataset sharded once per session, and a way to break
a running command at a line of its output."""

import dataclasses
import time

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


def _interrupt_at(proc, marker: str, act, timeout: float) -> tuple[str, float]:
    """Read `proc`'s output until a line holds `marker`, call `act()` (a Ctrl-C, a node killed),
    then wait for the exit. Returns (all the output, seconds from `act` to the exit); the process
    is killed when anything fails on the way."""
    lines: list[str] = []
    rest = ""
    try:
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                break
        assert any(marker in line for line in lines), "".join(lines)[-4000:]
        act()
        acted = time.monotonic()
        rest, _ = proc.communicate(timeout=timeout)
        waited = time.monotonic() - acted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(lines) + rest, waited


@pytest.fixture
def interrupt_at():
    """`interrupt_at(proc, marker, act, timeout)`: see `_interrupt_at`."""
    return _interrupt_at
