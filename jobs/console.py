"""What reaches the console of a `vared2` command: our lines live, other programs' chatter to a log.

Ray, its C++ core and MLflow write to the process's file descriptors 1 and 2 directly (the log
monitor prints every Ray process's lines, prefixed `(Name pid=N)`), so filtering Python's
`sys.stdout` is not enough: `filtered` swaps fds 1 and 2 for pipes, copies everything into the log
file, and passes on to the terminal every line that is not one of the known kinds of chatter
below. Lines are never reordered or held back for long: a partial line (a tqdm bar between its
`\\r`s) is passed on after a short pause. `--verbose` (or being inside a Ray job, whose log Ray
keeps anyway) turns the filter off.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import threading
import time
from pathlib import Path

# Chatter: each pattern is a kind of line a user of vared2 does not need on the console. What is
# left (our stage lines, epoch lines, bars, tables, warnings and errors of ours, and any line we
# do not know) goes through.
NOISE = tuple(re.compile(p) for p in (
    rb"Token authentication is enabled for this Ray cluster",
    rb"PreemptionWatcher",
    rb"\(raylet\)",  # raylet's own warnings: worker pool sizes, store disconnects
    rb"^\s*\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWE] \d+ \d+\]",  # Ray's C++ log lines
    rb"\((TrainController|PlacementGroupCleaner|SynchronizationActor|_StatsActor) pid=\d+",
    rb"INFO worker\.py:\d+ -- (Started a local Ray instance|Connecting to existing Ray cluster|Connected to Ray cluster)",
    rb"INFO (usage_lib|scripts)\.py",
    rb"has constructor arguments in the object store and max_restarts",
    rb"Monitor thread did not exit",
    # Tune's own progress: the status block it prints every 30 s, its boxes and trial lines (ours
    # are the trials' epoch lines and the sweep's result tables).
    rb"^(Trial status:|Current time:|Logical resource usage:|View detailed results here|"
    rb"To visualize your results with TensorBoard|Trial \S+ (started with configuration|completed after))",
    "^[\u2502\u251c\u256d\u2570]".encode(),  # box-drawing lines of Tune's tables
    # MLflow's registry messages (our registry table follows them).
    rb"^(Successfully registered model|Created version '|Registered model '.*' already exists)",
    rb"WARNING mlflow\.",
))
PAUSE_S = 0.2  # a partial line (no \n or \r yet) is passed on after this long without more data


def is_noise(line: bytes) -> bool:
    return any(p.search(line) for p in NOISE)


def log_path(command: str) -> Path:
    """`logs/vared2-<command>-<time>.log` (the folder: $VARED2_LOG_DIR, else logs/ here)."""
    folder = Path(os.environ.get("VARED2_LOG_DIR", "logs"))
    return folder / f"vared2-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _pump(read_fd: int, terminal_fd: int, log, lock: threading.Lock) -> None:
    """Copy `read_fd` into `log`, and its lines that are not noise to `terminal_fd`, until EOF."""
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], PAUSE_S)
        chunk = os.read(read_fd, 65536) if ready else None
        if chunk == b"":  # EOF: the last writer closed
            break
        if chunk:
            pending += chunk
        while True:
            match = re.search(rb"[\r\n]", pending)
            if match is None:
                break
            segment, pending = pending[:match.end()], pending[match.end():]
            _emit(segment, terminal_fd, log, lock)
        if chunk is None and pending:  # nothing more for a while: show the partial line
            _emit(pending, terminal_fd, log, lock)
            pending = b""
    if pending:
        _emit(pending, terminal_fd, log, lock)


def _emit(segment: bytes, terminal_fd: int, log, lock: threading.Lock) -> None:
    with lock:
        if segment.endswith(b"\n") or not segment.endswith(b"\r"):
            log.write(segment)  # a bar's intermediate frames stay out of the log
        if segment in (b"\r", b"\n") or not is_noise(segment):
            os.write(terminal_fd, segment)


@contextlib.contextmanager
def filtered(path: str | os.PathLike):
    """Inside: fds 1 and 2 go through the filter; everything is also in `path`. Yields the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    lock = threading.Lock()
    threads = []
    with open(path, "ab", buffering=0) as log:
        for fd in (1, 2):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            thread = threading.Thread(target=_pump, args=(read_fd, saved[fd], log, lock), daemon=True,
                                      name=f"vared2-console-{fd}")
            thread.start()
            threads.append((thread, read_fd))
        try:
            yield path
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd in (1, 2):
                os.dup2(saved[fd], fd)  # our end of each pipe is closed: the pump sees EOF ...
            for thread, read_fd in threads:
                # ... unless a process we started still holds it (a Ray process that outlives us).
                thread.join(timeout=2)
                if not thread.is_alive():
                    os.close(read_fd)
            for fd in saved.values():
                os.close(fd)


def wanted(verbose: bool) -> bool:
    """Filter unless asked not to (`--verbose`, VARED2_VERBOSE=1) or inside a Ray job, whose
    driver log Ray keeps whole (`ray job logs`)."""
    in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ or "_ray_pkg_" in os.getcwd()
    return not (verbose or in_job or os.environ.get("VARED2_VERBOSE") == "1")
