"""The suite's leak check (tests/conftest.py): a process a test leaves running fails the session."""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LEAKY = '''
import subprocess, sys

def test_leaves_a_process_behind():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)

def test_cleans_up_after_itself():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    p.kill(); p.wait()
'''


def _session(tmp_path, select):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "VARED2_LEAK_GRACE_S": "2"})


def test_a_process_left_running_by_a_test_fails_the_session_and_is_killed(tmp_path):
    leaky = _session(tmp_path, "leaves")
    assert leaky.returncode == 1, leaky.stdout[-2000:]
    assert "1 passed" in leaky.stdout and "LEAKED: 1 process(es)" in leaky.stdout
    pid = int(leaky.stdout.split("LEAKED")[1].splitlines()[1].split(":")[0])
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    clean = _session(tmp_path, "cleans")
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert "no process started by the tests is left running" in clean.stdout
