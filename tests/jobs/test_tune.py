"""A Ray Tune sweep on the debug preset (local Ray, 1 worker per trial, 2 epochs, ASHA grace 1).

One sweep over lambda_e in {0, 2, 20} serves every test: it is started by the CLI in a subprocess,
interrupted (SIGINT) once a trial has finished, and restored in this process, which completes the
remaining trials, trains the static baseline, reports the front and registers the models.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.config import load_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LAMBDAS = (0, 2, 20)


def sweep_overrides(shards, tmp):
    return [f"data.root={shards}", f"runtime.storage_path={tmp / 'runs'}",
            f"runtime.tracking_uri=sqlite:///{tmp / 'mlruns.db'}", "runtime.num_workers=1",
            "train.epochs=2", "train.lambda_e_warmup_epochs=0", "train.lr=0.05",
            "data.batch_size=2",  # 8 steps per epoch (1 would break BatchNorm in the gates)
            "train.schedule=constant", "tune.num_samples=1", "tune.grace_period=1",
            "tune.reduction_factor=2"]


def finished_trial_runs(cfg, sweep):
    from jobs.tracking import Tracker

    tracker = Tracker(cfg.runtime)
    runs = tracker.client.search_runs([tracker.experiment_id],
                                      filter_string=f"tags.`vared2.sweep` = '{sweep}' and attributes.status = 'FINISHED'")
    return {r.info.run_id: r.info.end_time for r in runs if "vared2.trial_id" in r.data.tags}


@pytest.fixture(scope="module")
def sweep(debug_shards, tmp_path_factory):
    """Run, interrupt after the first finished trial, restore: returns what the tests check."""
    import ray

    from jobs.tune import run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    overrides = sweep_overrides(debug_shards, tmp)
    cfg = load_config("debug", overrides)
    name = "t"
    cmd = [sys.executable, "-m", "jobs.cli", "tune", "--preset", "debug", "--name", name,
           "--param", "train.lambda_e=grid:" + ",".join(map(str, LAMBDAS)),
           "--param", "model.search_space=3", *overrides]
    log = (tmp / "first.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 400
        before = {}
        state = tmp / "runs" / f"{name}.vared2-sweep.json"  # written once the MLflow store exists
        while time.monotonic() < deadline and proc.poll() is None and not before:
            time.sleep(2)
            before = finished_trial_runs(cfg, name) if state.exists() else {}
        assert before, f"no trial finished before the interruption; see {tmp / 'first.log'}"
        proc.send_signal(signal.SIGINT)  # Ctrl+C: Tune saves its state and stops the running trials
        rc = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first_log = (tmp / "first.log").read_text()
    before = finished_trial_runs(cfg, name)  # a trial may have finished during the shutdown
    assert rc == 130, first_log[-3000:]
    assert len(before) < len(LAMBDAS), "the sweep finished before it could be interrupted"
    checkpoints_before = {p.name: sorted(p.glob("checkpoint_*")) for p in (tmp / "runs").glob(f"{name}-*")}

    try:
        out = run_sweep(cfg, name=name, resume=True)
    finally:
        ray.shutdown()
    return {"cfg": cfg, "out": out, "before": before, "after": finished_trial_runs(cfg, name),
            "checkpoints_before": checkpoints_before, "tmp": tmp, "first_log": first_log}


def test_restoring_an_interrupted_sweep_completes_only_the_remaining_trials(sweep):
    before, after, out = sweep["before"], sweep["after"], sweep["out"]
    assert not out["interrupted"]
    assert len(out["rows"]) == len(LAMBDAS) == len(after)  # one MLflow run per trial, no duplicates
    for run_id, end_time in before.items():
        assert after[run_id] == end_time, "a trial finished before the interruption was re-run"
    rows = {r["run_id"]: r for r in out["rows"]}
    assert set(before) <= set(rows)
    # Its TorchTrainer wrote no new checkpoint either.
    tmp = sweep["tmp"]
    for row in out["rows"]:
        if row["run_id"] in before:
            folder = tmp / "runs" / f"t-{row['trial_id']}"
            assert sorted(folder.glob("checkpoint_*")) == sweep["checkpoints_before"][folder.name]
    assert all(r["status"] != "error" for r in out["rows"])


def test_sweep_has_a_parent_run_with_the_front_plot_and_table_and_a_child_run_per_trial(sweep):
    from jobs.tracking import Tracker

    cfg, out = sweep["cfg"], sweep["out"]
    tracker = Tracker(cfg.runtime)
    c = tracker.client
    parent = c.get_run(out["parent_run_id"])
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in c.list_artifacts(out["parent_run_id"], "sweep")}
    assert {"sweep/pareto.png", "sweep/trials.csv", "sweep/trials.md"} <= artifacts
    assert (out["report"]["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n")
    assert parent.data.metrics["sweep/trials"] == len(LAMBDAS)
    children = c.search_runs([tracker.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{out['parent_run_id']}'")
    trials = [r for r in children if "vared2.trial_id" in r.data.tags]
    assert len(trials) == len(LAMBDAS)
    assert sorted(float(r.data.params["lambda_e"]) for r in trials) == list(LAMBDAS)
    for r in trials:
        assert r.info.status == "FINISHED"
        assert r.data.params["S"] == "3" and r.data.params["override.model.search_space"] == "3"
        assert {"test/clip_top1", "test/video_top1", "test/gflops_avg"} <= set(r.data.metrics)
        assert [m.step for m in c.get_metric_history(r.info.run_id, "val/gflops_avg")][0] == 1
        contexts = {t.value for i in c.get_run(r.info.run_id).inputs.dataset_inputs for t in i.tags}
        assert contexts == {"training", "validation"}
    assert any(r.data.tags.get("vared2.role") == "static-baseline" for r in children)
    # The front: exactly the completed trials no other trial dominates.
    from pipeline.train.pareto import dominates

    done = [r for r in out["rows"] if "test/clip_top1" in r]
    point = lambda r: (r["test/clip_top1"], r["test/gflops_avg"])  # noqa: E731
    for r in done:
        dominated = any(dominates(point(o), point(r)) for o in done if o is not r)
        assert r["on_front"] == (not dominated)
    assert "on_front" in (sweep["tmp"] / "runs" / "t.report" / "trials.csv").read_text()


def test_front_models_are_registered_with_tags_and_aliases_and_compared(sweep, capsys):
    from jobs.registry import CHAMPION, STATIC, compare
    from jobs.tracking import Tracker

    cfg, out = sweep["cfg"], sweep["out"]
    reg = out["registry"]
    c = Tracker(cfg.runtime).client
    assert len(reg["versions"]) == len(out["front"]) >= 1
    champion = c.get_model_version_by_alias(reg["name"], CHAMPION)
    static = c.get_model_version_by_alias(reg["name"], STATIC)
    assert champion.version in reg["versions"] and static.version == reg["static"]
    for key in ("lambda_e", "S", "gflops_avg", "gflops_max", "gflops_min", "clip_top1",
                "video_top1", "dataset", "manifest_hash", "git_commit"):
        assert key in champion.tags, key
    assert champion.tags["manifest_hash"] not in ("", "none")
    assert f"models:/{reg['name']}/{champion.version}" in champion.description
    assert f"models:/{reg['name']}@{CHAMPION}" in c.get_registered_model(reg["name"]).description
    best = max(float(c.get_model_version(reg["name"], v).tags["clip_top1"]) for v in reg["versions"])
    assert float(champion.tags["clip_top1"]) == best
    table = compare(cfg, reg["name"], sweep="t")
    assert capsys.readouterr().out.strip() == table.strip()
    lines = table.splitlines()
    assert len(lines) == 3 + len(reg["versions"]) + 1  # title, header, rule, versions, static
    assert any(CHAMPION in line for line in lines) and any(STATIC in line for line in lines)


def test_registry_compare_cli_and_unknown_model_error(sweep, capsys):
    from jobs.cli import main

    overrides = [f"runtime.tracking_uri={sweep['cfg'].runtime.tracking_uri}"]
    assert main(["registry", "compare", "--preset", "debug", *overrides]) == 0
    assert "static-baseline" in capsys.readouterr().out
    assert main(["registry", "compare", "--preset", "debug", "--name", "nope", *overrides]) == 2
    assert "registered: vared2-debug" in capsys.readouterr().err


def test_champion_from_the_registry_predicts_like_the_trained_model_in_hard_mode(sweep):
    from jobs.evaluate import load_for_eval
    from jobs.registry import CHAMPION
    from jobs.tracking import Tracker

    cfg, out = sweep["cfg"], sweep["out"]
    c = Tracker(cfg.runtime).client
    version = c.get_model_version_by_alias(out["registry"]["name"], CHAMPION)
    row = next(r for r in out["rows"] if r["run_id"] == version.run_id)
    folder = sweep["tmp"] / "runs" / f"t-{row['trial_id']}"
    last = sorted(p for p in folder.glob("checkpoint_*") if p.is_dir())[-1]
    _, registered = load_for_eval(f"models:/{out['registry']['name']}@{CHAMPION}",
                                  [f"runtime.tracking_uri={cfg.runtime.tracking_uri}"])
    _, trained = load_for_eval(str(last))
    registered.eval()
    trained.eval()
    clips = torch.randn(4, 3, cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    with torch.no_grad():
        a, b = registered(clips), trained(clips)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.policy, b.policy)
    assert json.loads(json.dumps(version.tags))["S"] == "3"


def test_bad_search_spaces_fail_before_ray_starts(tmp_path):
    from jobs.tune import run_sweep

    cfg = load_config("debug", [f"runtime.storage_path={tmp_path}"])
    with pytest.raises(ValueError, match="choose one of 2, 3, 4"):
        run_sweep(cfg, {"model.search_space": ("choice", [2, 5])}, name="bad")
    with pytest.raises(ValueError, match="valid keys under train"):
        run_sweep(cfg, {"train.lamda": ("grid", [1])}, name="bad")
    with pytest.raises(ValueError, match="scheduler=none"):
        run_sweep(load_config("debug", [f"runtime.storage_path={tmp_path}", "tune.search=optuna"]),
                  name="bad")
    with pytest.raises(ValueError, match="no sweep named"):
        run_sweep(cfg, name="missing", resume=True)


def test_a_failed_trial_is_retried_from_its_checkpoint_not_from_scratch(debug_shards, tmp_path):
    """The TorchTrainer may not retry (runtime.max_failures=0), so the injected failure after epoch
    1 fails the trial; Tune re-runs it and its TorchTrainer resumes at epoch 2."""
    import ray

    from jobs.tracking import Tracker
    from jobs.tune import run_sweep

    cfg = load_config("debug", [*sweep_overrides(debug_shards, tmp_path), "runtime.max_failures=0",
                                "runtime.fail_at_epoch=1", "tune.static_baseline=false",
                                "tune.scheduler=none", "tune.max_trial_failures=1",
                                "train.eval_every=5"])  # epochs without validation: Tune needs no metric
    try:
        out = run_sweep(cfg, {"train.lambda_e": ("grid", [1.0])}, name="retry", register=False)
    finally:
        ray.shutdown()
    (row,) = out["rows"]
    assert row["status"] == "completed"
    assert list((tmp_path / "runs").glob(".failed-once-retry-*")), "the failure was not injected"
    c = Tracker(cfg.runtime).client
    assert c.get_run(row["run_id"]).info.status == "FINISHED"
    # Epoch 1 was trained (and logged) once: the retry started from its checkpoint.
    assert [m.step for m in c.get_metric_history(row["run_id"], "train/loss")] == [1, 2]


def test_multi_objective_optuna_search_samples_lambda_e_and_s_and_runs_every_trial(debug_shards, tmp_path):
    import ray

    from jobs.tune import build_tuner, run_sweep

    cfg = load_config("debug", [*sweep_overrides(debug_shards, tmp_path), "tune.scheduler=none",
                                "tune.search=optuna", "tune.num_samples=2", "tune.static_baseline=false",
                                "tune.lambda_e_min=0.1", "tune.lambda_e_max=10",
                                "train.eval_every=5"])  # the searcher reads every epoch: forced to 1
    try:
        out = run_sweep(cfg, name="mo", register=False)  # default space: lambda_e x S
        tuner = build_tuner(cfg, {"train.lambda_e": ("loguniform", [0.1, 10])},
                            {"name": "x", "parent_run_id": "p"}, restore=False)
        searcher = tuner._local_tuner._tune_config.search_alg
        assert type(searcher).__name__ == "OptunaSearch"
        assert searcher.metric == ["val/clip_top1", "val/gflops_avg"] and searcher.mode == ["max", "min"]
    finally:
        ray.shutdown()
    assert len(out["rows"]) == 2 and all(r["status"] == "completed" for r in out["rows"])
    for r in out["rows"]:
        assert 0.1 <= r["lambda_e"] <= 10 and r["S"] in (2, 3, 4)
    assert out["front"]
