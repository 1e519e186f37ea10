"""Reading checkpoints back: a file, a checkpoint folder, or a run's folder of Ray Train checkpoints."""

import pytest
from torch import nn

from pipeline.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint


def _save(directory, epoch: int) -> None:
    save_checkpoint(directory, model=nn.Linear(2, 2), epoch=epoch, step=epoch, config={"epoch": epoch})


def test_a_run_folder_reads_as_its_newest_checkpoint_that_reads_back_whole(tmp_path):
    run = tmp_path / "runs" / "static"
    _save(run / "checkpoint_2026-12-04_19-04-53.430204", epoch=0)
    _save(run / "checkpoint_2026-12-04_19-05-04.841002", epoch=1)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray Train's bookkeeping beside them
    state = load_checkpoint(run)
    assert state["epoch"] == 1 and state["source"].endswith("checkpoint_2026-12-04_19-05-04.841002")
    # A newest checkpoint cut short (a crash mid-write) is passed over for the one before it.
    cut = run / "checkpoint_2026-12-04_19-06-00.000000"
    cut.mkdir()
    (cut / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    assert load_checkpoint(run)["epoch"] == 1
    half = run / "checkpoint_2026-12-04_19-07-00.000000"  # and one the disk filled up under
    _save(half, epoch=2)
    data = (half / CHECKPOINT_FILE).read_bytes()
    (half / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    assert load_checkpoint(run)["epoch"] == 1
    # A checkpoint folder and a file still read as themselves.
    first = run / "checkpoint_2026-12-04_19-04-53.430204"
    assert load_checkpoint(first)["epoch"] == 0 == load_checkpoint(first / CHECKPOINT_FILE)["epoch"]


def test_a_folder_without_checkpoints_is_an_error_naming_what_is_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="run folder holding checkpoint_"):
        load_checkpoint(tmp_path / "empty")
    bad = tmp_path / "bad" / "checkpoint_1"
    bad.mkdir(parents=True)
    (bad / CHECKPOINT_FILE).write_bytes(b"x")
    with pytest.raises(ValueError, match="reads back whole"):
        load_checkpoint(tmp_path / "bad")
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing")
