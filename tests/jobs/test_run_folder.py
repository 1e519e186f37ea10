"""The run folder's care on the driver: newest readable checkpoint, repair, free-space check."""

import json
from pathlib import Path

import pytest
import torch

from jobs import run_folder
from pipeline.train.checkpoint import save_checkpoint


def _checkpoint(run, stamp, epoch):
    return save_checkpoint(run / f"checkpoint_{stamp}", model=torch.nn.Linear(2, 2), epoch=epoch,
                           step=epoch, config={}).parent


def test_the_newest_checkpoint_that_reads_back_whole_is_the_one_to_resume_from(tmp_path):
    run = tmp_path / "r"
    _checkpoint(run, "2026-01-01_00-00-01.000000", 0)
    second = _checkpoint(run, "2026-01-01_00-00-02.000000", 1)
    cut = _checkpoint(run, "2026-01-01_00-00-03.000000", 2)
    data = (cut / "checkpoint.pt").read_bytes()
    (cut / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # written when the disk filled
    assert run_folder.latest_checkpoint(str(tmp_path), "r") == (second, 1)
    assert run_folder.latest_checkpoint(str(tmp_path), "nothing") is None
    assert run_folder.latest_checkpoint("s3://bucket/runs", "r") is None


def test_a_resume_takes_the_newer_of_ray_s_checkpoint_and_the_folder_s_reading_each_once(tmp_path, monkeypatch):
    from jobs import train
    from pipeline.train import checkpoint

    class RayCheckpoint:  # the two things _resume_state uses of ray.train.Checkpoint
        def __init__(self, path):
            self.path = str(path)

        def as_directory(self):
            import contextlib
            return contextlib.nullcontext(self.path)

    run = tmp_path / "r"
    older = _checkpoint(run, "2026-01-01_00-00-01.000000", 0)
    newer = _checkpoint(run, "2026-01-01_00-00-02.000000", 1)
    reads = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda d: reads.append(Path(d)) or real(d))
    # Ray's bookkeeping lags the folder (a Ctrl-C between a report and the controller's poll).
    state, size = train._resume_state(RayCheckpoint(older), str(tmp_path), "r")
    assert state["epoch"] == 1 and size == run_folder.size_of(newer)
    assert sorted(reads) == [older, newer]
    # Ray's checkpoint is the folder's newest: read once, not twice.
    reads.clear()
    state, _ = train._resume_state(RayCheckpoint(newer), str(tmp_path), "r")
    assert state["epoch"] == 1 and reads == [newer]
    # Remote storage has no folder to scan: Ray's checkpoint is the state.
    reads.clear()
    state, _ = train._resume_state(RayCheckpoint(older), "s3://bucket/runs", "r")
    assert state["epoch"] == 0 and reads == [older]
    assert train._resume_state(None, str(tmp_path), "nothing") == (None, 0)


def test_repair_sets_aside_an_unreadable_snapshot_and_deletes_cut_short_checkpoints(tmp_path):
    run = tmp_path / "r"
    good = _checkpoint(run, "2026-01-01_00-00-01.000000", 0)
    cut = _checkpoint(run, "2026-01-01_00-00-02.000000", 1)
    (cut / "checkpoint.pt").write_bytes(b"")
    (run / run_folder.SNAPSHOT).write_text("")  # Ray's bookkeeping, emptied by a full disk
    notes = run_folder.repair(str(tmp_path), "r")
    assert len(notes) == 2 and any(cut.name in n for n in notes)
    assert not cut.exists() and good.exists()
    assert (run / (run_folder.SNAPSHOT + ".unreadable")).exists()
    assert not (run / run_folder.SNAPSHOT).exists()
    (run / run_folder.SNAPSHOT).write_text(json.dumps({"ok": 1}))  # a readable one is Ray's to keep
    assert run_folder.repair(str(tmp_path), "r") == []
    assert (run / run_folder.SNAPSHOT).exists()


def test_free_space_is_checked_against_the_checkpoint_size_plus_headroom(tmp_path):
    import shutil

    free = shutil.disk_usage(tmp_path).free
    run_folder.check_space(str(tmp_path / "not-yet-made"), 1, what="x")  # checks the nearest folder
    with pytest.raises(run_folder.StorageFull, match=r"is full: .* MB free, epoch 2's checkpoint needs"):
        run_folder.check_space(str(tmp_path), free, what="epoch 2's checkpoint")
    run_folder.check_space("s3://bucket/runs", 1 << 60, what="x")  # remote storage: Ray's to manage
    assert run_folder.is_full_error(RuntimeError("OSError: [Errno 28] No space left on device"))
    assert not run_folder.is_full_error(RuntimeError("injected failure"))
