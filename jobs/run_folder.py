"""What a training run keeps in its storage folder (`runtime.storage_path/<run name>`), and the
driver's care of it: the lock that refuses a second driver, the newest checkpoint a rerun resumes
from, repair after a crash or a full disk, and the free-space check before a checkpoint is written.

Ray Train owns the folder's layout (`checkpoint_<time>/` per report, `checkpoint_manager_snapshot.json`
for its bookkeeping); this module only reads it, except that it sets aside what Ray cannot read
back (a snapshot or checkpoint cut short by a full disk). Remote storage (`s3://...`) is left to
Ray: every function here is a no-op or None for it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

LOCK = ".vared2-driver.lock"
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's checkpoint bookkeeping
# Room kept free beyond a checkpoint's own size: Ray rewrites its snapshot and our config.json
# after each checkpoint, and a cut-short snapshot makes the run unresumable by Ray.
HEADROOM = 1 << 20


class StorageFull(ValueError):
    """The run's storage has no room for the next checkpoint; the previous one is intact."""


def is_remote(storage: str) -> bool:
    return "://" in storage


def folder(storage: str, name: str) -> Path:
    return Path(storage) / name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(storage: str, name: str) -> Path | None:
    """Refuse a second driver for a run name that a live driver is training: both would write into
    one MLflow run and one Ray Train folder. The lock (host, pid) sits in the run's storage folder;
    a lock left by a dead process on this host is taken over. None for remote storage."""
    if is_remote(storage):
        return None
    run = folder(storage, name)
    run.mkdir(parents=True, exist_ok=True)
    lock = run / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    if lock.exists():
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            owner = {}
        if owner and owner != me:
            same_host = owner.get("host") == me["host"]
            if not same_host or _alive(int(owner.get("pid", -1))):
                where = f"pid {owner.get('pid')} on {owner.get('host')}"
                raise ValueError(f"run {name!r} is already being trained ({where}); choose another "
                                 f"runtime.run_name, or wait for it (if that process is gone, delete {lock})")
    tmp = lock.with_suffix(".tmp")
    tmp.write_text(json.dumps(me))
    tmp.replace(lock)
    return lock


def release_lock(lock: Path | None) -> None:
    if lock is not None:
        lock.unlink(missing_ok=True)


def has_run(storage: str, name: str) -> bool:
    """The folder holds a run to continue (not only a driver lock)."""
    run = folder(storage, name)
    return not is_remote(storage) and run.is_dir() and any(p.name != LOCK for p in run.iterdir())


def _state(directory: Path) -> dict | None:
    """The state a checkpoint folder holds, or None when it cannot be read back whole."""
    from pipeline.train.checkpoint import load_checkpoint

    try:
        return load_checkpoint(directory)
    except (ValueError, OSError):
        return None


def _epoch(directory: Path) -> int | None:
    state = _state(directory)
    return None if state is None else int(state["epoch"])


def checkpoints(storage: str, name: str) -> list[Path]:
    """Ray Train's checkpoint folders of the run, oldest first (their names are timestamps)."""
    run = folder(storage, name)
    if is_remote(storage) or not run.is_dir():
        return []
    return sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint_"))


def latest_state(storage: str, name: str) -> tuple[Path, dict] | None:
    """The newest checkpoint that reads back whole, and the state it holds (read once). This does
    not depend on Ray Train's bookkeeping, which can lag a checkpoint already written (a Ctrl-C
    between the upload and the controller's next poll) or be lost (a full disk cut its snapshot
    short)."""
    for directory in reversed(checkpoints(storage, name)):
        state = _state(directory)
        if state is not None:
            return directory, state
    return None


def latest_checkpoint(storage: str, name: str) -> tuple[Path, int] | None:
    """`latest_state`'s folder and epoch."""
    found = latest_state(storage, name)
    return None if found is None else (found[0], int(found[1]["epoch"]))


def repair(storage: str, name: str) -> list[str]:
    """Before a rerun: set aside what a crash or a full disk left unreadable, so that Ray Train can
    start and the run resumes from `latest_checkpoint`. Returns one line per thing set aside.

    - a snapshot that is not JSON (written in place by Ray; a full disk leaves it empty) is renamed
      `*.unreadable`: Ray then starts its bookkeeping afresh;
    - checkpoint folders that do not read back whole are deleted (they hold no usable state and
      take the space the next checkpoint needs).
    """
    run = folder(storage, name)
    notes: list[str] = []
    snapshot = run / SNAPSHOT
    if not is_remote(storage) and snapshot.exists():
        try:
            json.loads(snapshot.read_text())
        except (OSError, ValueError):
            snapshot.replace(snapshot.with_name(SNAPSHOT + ".unreadable"))
            notes.append(f"set aside Ray Train's unreadable {SNAPSHOT} (cut short by a full disk or a crash)")
    for directory in checkpoints(storage, name):
        if _epoch(directory) is None:
            shutil.rmtree(directory, ignore_errors=True)
            notes.append(f"deleted {directory.name}: it does not read back whole (written when the disk was full?)")
    return notes


def size_of(directory: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def check_space(storage: str, needed: int, *, what: str) -> None:
    """Raise StorageFull unless `storage` has `needed` bytes plus HEADROOM free (local paths only)."""
    if is_remote(storage):
        return
    path = Path(storage)
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    if free < needed + HEADROOM:
        raise StorageFull(f"runtime.storage_path={storage} is full: {_mb(free)} free, {what} needs "
                          f"{_mb(needed)} and {_mb(HEADROOM)} to spare")


def is_full_error(error: BaseException) -> bool:
    """A failure (possibly wrapped by Ray) caused by a full disk."""
    text = str(error)
    return ("StorageFull" in text or "No space left on device" in text or "[Errno 28]" in text
            or isinstance(error, StorageFull))


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"
