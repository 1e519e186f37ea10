"""cluster/start-local-cluster.sh without starting Ray (the real start/stop runs in
tests/jobs/test_job_submission.py): syntax, usage, and a stop that touches nothing it did not start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "start-local-cluster.sh"


def run(*args, state: Path):
    env = {**os.environ, "VARED2_RAY_DIR": str(state)}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_script_parses_and_is_executable():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert os.access(SCRIPT, os.X_OK)


def test_script_binds_the_head_to_loopback_only():
    text = SCRIPT.read_text()
    assert "--node-ip-address=127.0.0.1" in text and "--dashboard-host=127.0.0.1" in text
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in text  # else Ray swaps 127.0.0.1 for the LAN IP
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "ray stop" in line]  # never a machine-wide kill


def test_unknown_command_prints_usage_and_exits_2(tmp_path):
    result = run("restart", state=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_stop_and_status_without_a_head_change_nothing(tmp_path):
    assert run("status", state=tmp_path).returncode == 3
    result = run("stop", state=tmp_path)
    assert result.returncode == 0 and "no head started by this script" in result.stdout


def test_stop_ignores_a_stale_pid_file(tmp_path):
    # A pid that has exited (this finished child): stop must not signal anything else.
    child = subprocess.Popen(["true"])
    child.wait()
    (tmp_path / "head.pid").write_text(str(child.pid))
    result = run("stop", state=tmp_path)
    assert result.returncode == 0 and "already exited" in result.stdout
    assert not (tmp_path / "head.pid").exists()
