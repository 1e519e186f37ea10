"""The console filter: our lines reach the terminal, Ray's chatter only the log; nothing is lost."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import os, subprocess, sys, time
from jobs import console
with console.filtered(sys.argv[1]):
    print("epoch 1/2 loss 1.0", flush=True)
    print("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled", file=sys.stderr, flush=True)
    # A child writing to the inherited descriptors, as Ray's processes and C++ core do.
    subprocess.run(["sh", "-c", "echo '(raylet) worker_pool.cc: some warning'; echo 'a line we do not know'"])
    os.write(2, b"[2026-12-02 03:23:26,352 E 26221 26259] core_worker.cc:2465: PreemptionWatcher\n")
    os.write(2, b"\rbar 50%")  # a progress bar's frame, no newline yet
    time.sleep(0.5)
    os.write(2, b"\rbar 100%\n")
    print("vared2 train: error: something of ours", file=sys.stderr, flush=True)
print("after the filter", flush=True)
'''


def test_chatter_goes_to_the_log_only_and_everything_else_reaches_the_terminal(tmp_path):
    log = tmp_path / "logs" / "x.log"
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], cwd=REPO, capture_output=True,
                         timeout=60)
    terminal = out.stdout.decode() + out.stderr.decode()
    assert out.returncode == 0, terminal
    for ours in ("epoch 1/2 loss 1.0", "a line we do not know", "bar 50%", "bar 100%",
                 "vared2 train: error: something of ours", "after the filter"):
        assert ours in terminal, ours
    for chatter in ("Token authentication", "(raylet)", "PreemptionWatcher"):
        assert chatter not in terminal, chatter
    logged = log.read_text()
    for line in ("epoch 1/2 loss 1.0", "Token authentication", "(raylet) worker_pool.cc", "PreemptionWatcher",
                 "a line we do not know", "bar 100%", "something of ours"):
        assert line in logged, line
    assert "after the filter" not in logged


def test_the_filter_is_off_with_verbose_or_inside_a_ray_job(monkeypatch):
    from jobs import console

    monkeypatch.delenv("VARED2_VERBOSE", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert console.wanted(verbose=False)
    assert not console.wanted(verbose=True)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # set by Ray for a submitted job's driver
    assert not console.wanted(verbose=False)


def test_ray_lines_of_ours_are_not_taken_for_chatter():
    from jobs import console

    assert not console.is_noise(b"\x1b[36m(RayTrainWorker pid=1)\x1b[0m epoch 1/16 loss 1.3599 top1 0.312\n")
    assert not console.is_noise(b"vared2 train: error: runtime.storage_path=/x is full\n")
    assert console.is_noise(b"\x1b[36m(TrainController pid=2)\x1b[0m Traceback (most recent call last):\n")


def test_tunes_status_blocks_and_mlflows_registry_lines_are_chatter():
    from jobs import console

    for line in ("Trial status: 2 RUNNING\n", "Current time: 2026-12-02 03:52:29. Total running time: 30s\n",
                 "Logical resource usage: 0/2 CPUs, 0/0 GPUs\n", "\u2502 Trial name  status \u2502\n",
                 "Successfully registered model 'vared2-demo'.\n",
                 "2026/12/02 03:56:28 WARNING mlflow.tracking._model_registry.fluent: Run with id x\n"):
        assert console.is_noise(line.encode()), line
    for line in ("registered vared2-demo versions [1]; champion = v1\n", "    1.00 -> 0.3926  0.790\n", "\n"):
        assert not console.is_noise(line.encode()), line
