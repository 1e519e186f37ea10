"""Shared test setup: skip GPU / DALI / FFCV tests where their hardware or package is missing."""

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    missing = {
        "gpu": None if _has_cuda() else "needs a CUDA GPU",
        "dali": None if importlib.util.find_spec("nvidia.dali") else "needs nvidia-dali",
        "ffcv": None if importlib.util.find_spec("ffcv") else "needs ffcv (make install-ffcv)",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


# No leaked processes: every process a test starts (Ray's raylet, GCS, workers and dashboard,
# CLI subprocesses, `ray start` nodes) inherits this variable; after the last test, none of them
# may still be alive. Checked by process environment, so a concurrent session's Ray is not ours.
SESSION_VAR = "VARED2_TEST_SESSION"
# Ray's processes of a just-stopped instance take a few seconds to exit.
LEAK_GRACE_S = float(__import__("os").environ.get("VARED2_LEAK_GRACE_S", "60"))


def pytest_sessionstart(session):
    import os
    import uuid

    os.environ[SESSION_VAR] = uuid.uuid4().hex
    import tempfile

    os.environ.setdefault("VARED2_LOG_DIR", tempfile.mkdtemp(prefix="vared2-test-logs-"))  # not logs/ here


def _ours_alive() -> list[str]:
    import os

    import psutil

    tag = f"{SESSION_VAR}={os.environ.get(SESSION_VAR)}"
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "status", "cmdline"]):
        if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["ppid"] == os.getpid() and "multiprocessing.resource_tracker" in " ".join(
                proc.info["cmdline"] or []):
            continue  # this process's own helper: it exits when this process does
        try:
            with open(f"/proc/{proc.info['pid']}/environ", "rb") as f:
                if tag.encode() not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        found.append(proc)
    return found


def pytest_sessionfinish(session, exitstatus):
    import os
    import time

    if SESSION_VAR not in os.environ or hasattr(session.config, "workerinput"):
        return
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # an in-process driver's local instance is the session's to stop
    except ImportError:
        pass
    deadline = time.monotonic() + LEAK_GRACE_S
    left = _ours_alive()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _ours_alive()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
    if not left:
        if reporter is not None:
            reporter.write_line("no process started by the tests is left running")
        return
    lines = [f"  {p.pid}: {' '.join(p.info['cmdline'] or [])[:150]}" for p in left]
    for proc in left:
        try:
            proc.kill()
        except Exception:
            pass
    if reporter is not None:
        reporter.write_line(f"LEAKED: {len(left)} process(es) started by the tests were still alive "
                            f"{LEAK_GRACE_S} s after the last test (now killed):", red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = 1
