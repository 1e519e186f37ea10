"""Ray Tune sweeps over the VA-RED² trade-off: one TorchTrainer (jobs.train.fit) per trial.

    vared2 tune --preset demo --param train.lambda_e=loguniform:0.01,10 --param model.search_space=choice:2,3,4

Ray 2.60 pattern: Tune runs `trial` (a small driver function) per trial; it builds the trial's
config from the base config plus the sampled dotted overrides, trains it (`jobs.run`: `fit` with a
`TuneReportCallback`, so ASHA sees every epoch's validation metrics) under the sweep's MLflow parent
run, evaluates the final checkpoint and reports the test metrics. A trial's TorchTrainer is named
`{sweep}-{trial_id}`, so a retried trial (Tune FailureConfig) or a restored sweep (Tuner.restore)
resumes each unfinished trial from its last checkpoint. After the sweep: ASHA-stopped trials are
evaluated from their last checkpoint, the Pareto front is computed, reported and registered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from jobs.tracking import Tracker
from pipeline.config import Config, apply_overrides, from_dict, to_dict
from pipeline.config.tune import check_spec

FINAL = "vared2_final"  # set in the last report of a trial that ran to the end and was evaluated


def default_spec(cfg: Config) -> dict[str, tuple[str, list]]:
    """lambda_e log-uniform and S over `tune.search_spaces` (the paper's two knobs)."""
    return {"train.lambda_e": ("loguniform", [cfg.tune.lambda_e_min, cfg.tune.lambda_e_max]),
            "model.search_space": ("choice", list(cfg.tune.search_spaces))}


def to_param_space(spec: dict[str, tuple[str, list]]) -> dict:
    from ray import tune

    make = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
            "randint": lambda a: tune.randint(int(a[0]), int(a[1])),
            "choice": tune.choice, "grid": tune.grid_search, "const": lambda a: a[0]}
    return {key: make[kind](args) for key, (kind, args) in spec.items()}


def check_sweep(cfg: Config, spec: dict) -> None:
    """Cross-field checks that single-key config validation cannot do."""
    t = cfg.tune
    if t.search == "optuna" and t.scheduler == "asha":
        raise ValueError("tune.search=optuna is a multi-objective search that runs every trial to "
                         "the end; set tune.scheduler=none, or use tune.search=random with ASHA")
    if t.search == "optuna" and any(kind == "grid" for kind, _ in spec.values()):
        raise ValueError("tune.search=optuna cannot expand grid axes; use choice:... or tune.search=random")
    if t.lambda_e_min > t.lambda_e_max:
        raise ValueError(f"tune.lambda_e_min={t.lambda_e_min} must not exceed tune.lambda_e_max={t.lambda_e_max}")
    if t.search == "optuna":
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            raise ValueError("tune.search=optuna needs the optuna package (pip install optuna); "
                             "or use tune.search=random")
    check_spec(cfg, spec)


def trial_overrides(config: dict) -> dict:
    """The sampled values of one trial, as dotted config overrides."""
    return {k: v for k, v in config.items() if "." in k}


def trial(config: dict, base: dict, sweep: dict) -> None:
    """One Tune trial: train with `fit` (reporting per epoch through Train), evaluate, report."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from jobs.run import train_and_evaluate

    overrides = trial_overrides(config)
    trial_id = tune.get_context().get_trial_id()
    cfg = apply_overrides(from_dict(Config, base),
                          {**overrides, "runtime.run_name": f"{sweep['name']}-{trial_id}"})
    done = finished_run(Tracker(cfg.runtime), cfg.runtime.run_name)
    if done is not None:  # finished and evaluated, but the sweep stopped before Tune recorded it
        tune.report({**done.data.metrics, FINAL: 1, "run_id": done.info.run_id})
        return
    out = train_and_evaluate(cfg, parent_run_id=sweep["parent_run_id"], callbacks=[TuneReportCallback()],
                             tags={"vared2.sweep": sweep["name"], "vared2.trial_id": trial_id,
                                   "vared2.overrides": json.dumps(overrides, sort_keys=True)},
                             params=trial_params(cfg, overrides))
    tune.report({**out["metrics"], **out["report"]["metrics"], FINAL: 1, "run_id": out["run_id"]})


def finished_run(tracker: Tracker, run_name: str):
    """The run of that name if it already finished with its final evaluation, else None."""
    run_id = tracker.find_run(run_name)
    if run_id is None:
        return None
    run = tracker.client.get_run(run_id)
    return run if run.info.status == "FINISHED" and "test/gflops_avg" in run.data.metrics else None


def trial_params(cfg: Config, overrides: dict) -> dict:
    """lambda_e and S under short names, plus every overridden key (idempotent on a retry)."""
    return {"lambda_e": cfg.train.lambda_e, "S": cfg.model.search_space,
            **{f"override.{k}": v for k, v in overrides.items()}}


def max_concurrent_trials(cfg: Config) -> int:
    """How many trials' TorchTrainers fit in the cluster at once (asking for more hangs)."""
    import ray

    total = ray.cluster_resources()
    per_trial_cpu = cfg.runtime.num_workers * cfg.runtime.cpus_per_worker
    fits = int(total.get("CPU", 0) // per_trial_cpu)
    if cfg.runtime.use_gpu:
        fits = min(fits, int(total.get("GPU", 0) // cfg.runtime.num_workers))
    if fits < 1:
        raise ValueError(f"one trial needs {per_trial_cpu} CPUs (runtime.num_workers x cpus_per_worker)"
                         f"{' and GPUs' if cfg.runtime.use_gpu else ''}; the cluster has {dict(total)}")
    return min(fits, cfg.tune.max_concurrent) if cfg.tune.max_concurrent else fits


def trial_dirname(t) -> str:
    return f"trial_{t.trial_id}"  # read back by collect_trials when a trial reported nothing


def needs_every_epoch(cfg: Config) -> bool:
    """ASHA decides at epochs and Optuna reads every report: both need val metrics in each one."""
    return cfg.tune.scheduler == "asha" or cfg.tune.search == "optuna"


def per_epoch_validation(cfg: Config) -> Config:
    """The sweep's config with `train.eval_every=1` where its scheduler or searcher needs it."""
    if needs_every_epoch(cfg) and cfg.train.eval_every != 1:
        print(f"sweep: train.eval_every={cfg.train.eval_every} -> 1 (tune.scheduler={cfg.tune.scheduler}, "
              f"tune.search={cfg.tune.search} read val metrics from every epoch)")
        return apply_overrides(cfg, ["train.eval_every=1"])
    return cfg


def objective_metrics(cfg: Config) -> tuple[str, str]:
    return f"val/{cfg.tune.objective}", "val/gflops_avg"


def build_tuner(cfg: Config, spec: dict, sweep: dict, *, restore: bool):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    # The driver function only waits on its TorchTrainer, whose workers hold the real resources;
    # Tune refuses an all-zero request, and any CPU fraction here would break the concurrency count.
    trainable = tune.with_resources(tune.with_parameters(trial, base=to_dict(cfg), sweep=sweep),
                                    {"CPU": 0, "memory": 64 * 2**20})
    path = str(Path(cfg.runtime.storage_path) / sweep["name"])
    if restore:
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    acc, gflops = objective_metrics(cfg)
    metric = mode = scheduler = search_alg = None
    if cfg.tune.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=[acc, gflops], mode=["max", "min"], seed=cfg.tune.seed)
    elif cfg.tune.scheduler == "asha":  # without a scheduler or searcher Tune needs no metric,
        metric, mode = acc, "max"       # so epochs without validation are fine
    if cfg.tune.scheduler == "asha":
        # time_attr "epoch" (not training_iteration): the trial's extra final report must not
        # count as an epoch, and max_t beyond the last epoch lets that report through.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=cfg.train.epochs + 1,
                                  grace_period=cfg.tune.grace_period,
                                  reduction_factor=cfg.tune.reduction_factor)
    return tune.Tuner(
        trainable, param_space=to_param_space(spec),
        tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler,
                                    search_alg=search_alg, num_samples=cfg.tune.num_samples,
                                    max_concurrent_trials=max_concurrent_trials(cfg),
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=sweep["name"], storage_path=cfg.runtime.storage_path, verbose=1,
            failure_config=tune.FailureConfig(max_failures=cfg.tune.max_trial_failures)))


def _state_path(cfg: Config, name: str) -> Path:
    return Path(cfg.runtime.storage_path) / f"{name}.vared2-sweep.json"


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def run_sweep(cfg: Config, spec: dict | None = None, *, name: str = "", resume: bool = False,
              static_run_id: str | None = None, register: bool = True) -> dict:
    """Run (or with `resume`, continue) a sweep; returns {"name", "parent_run_id", "rows", "front",
    "report", "registry"}. `spec` {dotted key: (kind, args)}; None = lambda_e x S (default_spec)."""
    from ray import tune

    from jobs.ray_env import init_ray
    from jobs.train import check_inputs, pin_paths

    cfg = pin_paths(per_epoch_validation(cfg))
    name = name or f"{cfg.name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    state_path = _state_path(cfg, name)
    if resume:
        if not state_path.exists():
            raise ValueError(f"no sweep named {name!r} under {cfg.runtime.storage_path} "
                             f"(expected {state_path}); start it without --resume")
        state = json.loads(state_path.read_text())
        cfg = from_dict(Config, state["config"])
        spec = {k: tuple(v) for k, v in state["spec"].items()}
        static_run_id = static_run_id or state.get("static_run_id")
    else:
        if state_path.exists():
            raise ValueError(f"sweep {name!r} already exists ({state_path}); "
                             f"resume it with --resume or choose another --name")
        spec = spec if spec is not None else default_spec(cfg)
        check_sweep(cfg, spec)
        check_inputs(cfg)
        state = {"config": to_dict(cfg), "spec": spec, "name": name}
    init_ray(cfg)
    tracker = Tracker(cfg.runtime)
    if not state.get("parent_run_id"):
        Path(cfg.runtime.storage_path).mkdir(parents=True, exist_ok=True)
        state["parent_run_id"] = tracker.start_run(
            cfg, run_name=name, tags={"vared2.sweep": name, "vared2.role": "sweep"})
        tracker.log_json(state["parent_run_id"], {k: list(v) for k, v in spec.items()}, "search_space.json")
        _save_state(state_path, state)
    parent = state["parent_run_id"]
    sweep = {"name": name, "parent_run_id": parent}
    restore = resume and tune.Tuner.can_restore(str(Path(cfg.runtime.storage_path) / name))
    print(f"sweep {name}: MLflow parent run {parent}; "
          f"{'restoring' if restore else 'starting'} Tune in {cfg.runtime.storage_path}/{name}")
    grid = build_tuner(cfg, spec, sweep, restore=restore).fit()
    unfinished = unfinished_trials(cfg, spec, name)
    if unfinished:  # interrupted (Ctrl+C / SIGINT): Tune saved its state; nothing is final yet
        print(f"sweep {name} interrupted with {unfinished} of {len(grid)} trials unfinished; "
              f"continue with: vared2 tune --name {name} --resume (same preset and overrides)")
        return {"name": name, "parent_run_id": parent, "interrupted": True, "unfinished": unfinished}
    rows = collect_trials(cfg, tracker, grid, sweep)

    if static_run_id is None and cfg.tune.static_baseline:
        static_run_id = train_static(cfg, tracker, sweep)
    state["static_run_id"] = static_run_id
    _save_state(state_path, state)
    return finish_sweep(cfg, tracker, sweep, rows, static_run_id=static_run_id, register=register)


def unfinished_trials(cfg: Config, spec: dict, name: str) -> int:
    """Trials not done, from the state Tune saved (in memory, Tune marks the trials it stops on
    Ctrl+C TERMINATED, like ASHA's; grid points not yet started are not listed at all)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(Path(cfg.runtime.storage_path) / name)).trials
    expected = cfg.tune.num_samples
    if cfg.tune.search != "optuna":
        for kind, args in spec.values():
            expected *= len(args) if kind == "grid" else 1
    pending = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
    return len(pending) + max(0, expected - len(trials))


def collect_trials(cfg: Config, tracker: Tracker, grid, sweep: dict) -> list[dict]:
    """One row per trial, with final test metrics read back from its MLflow run. Trials stopped
    by ASHA are evaluated here from their last checkpoint, so every trial has a final evaluation."""
    from jobs.run import evaluate_and_close

    c = tracker.client
    rows = []
    for result in grid:
        overrides = trial_overrides(result.config or {})
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_")
        run_name = f"{sweep['name']}-{trial_id}"
        run_id = metrics.get("run_id") or tracker.find_run(run_name)
        tcfg = apply_overrides(cfg, {**overrides, "runtime.run_name": run_name})
        status = "completed"
        if result.error is not None or run_id is None:
            status = "error"
        elif not metrics.get(FINAL):
            status = f"stopped at epoch {int(metrics.get('epoch', 0))}"
            run = c.get_run(run_id)
            if "test/gflops_avg" not in run.data.metrics and metrics.get("checkpoint_path"):
                tracker.set_tag(run_id, "vared2.stopped_early", str(int(metrics.get("epoch", 0))))
                evaluate_and_close(tcfg, run_id, _local_checkpoint(metrics["checkpoint_path"]), tracker=tracker)
        final = c.get_run(run_id).data.metrics if run_id else {}
        rows.append({"trial_id": trial_id, "run_id": run_id, "status": status,
                     "lambda_e": tcfg.train.lambda_e, "S": tcfg.model.search_space,
                     "overrides": overrides, "epochs": int(metrics.get("epoch", 0)),
                     **{k: final[k] for k in final if k.startswith(("test/", "val/"))}})
    return sorted(rows, key=lambda r: (r["lambda_e"], r["S"], r["trial_id"]))


def _local_checkpoint(path: str) -> Path:
    import tempfile

    import ray.train

    local = Path(tempfile.mkdtemp(prefix="vared2-ckpt-"))
    ray.train.Checkpoint(path).to_directory(str(local))
    return local


def train_static(cfg: Config, tracker: Tracker, sweep: dict) -> str:
    """The static model of the same shape and schedule, as a child of the sweep (resumable too)."""
    from jobs.run import train_and_evaluate

    scfg = apply_overrides(cfg, {"model.dynamic": "none", "runtime.run_name": f"{sweep['name']}-static"})
    run_id = tracker.find_run(scfg.runtime.run_name)
    if run_id and tracker.client.get_run(run_id).info.status == "FINISHED":
        return run_id
    print(f"sweep {sweep['name']}: training the static baseline")
    out = train_and_evaluate(scfg, parent_run_id=sweep["parent_run_id"],
                             tags={"vared2.sweep": sweep["name"], "vared2.role": "static-baseline"})
    return out["run_id"]


def finish_sweep(cfg: Config, tracker: Tracker, sweep: dict, rows: list[dict], *,
                 static_run_id: str | None, register: bool) -> dict:
    """Front, report artifacts on the parent run, registry versions and aliases; closes the parent."""
    from jobs import registry, sweep_report
    from pipeline.train.pareto import pareto_front

    acc = f"test/{cfg.tune.objective}"
    done = [r for r in rows if acc in r and "test/gflops_avg" in r]
    front = [done[i] for i in pareto_front([(r[acc], r["test/gflops_avg"]) for r in done])]
    for r in rows:
        r["on_front"] = r in front
    static = registry.run_summary(tracker, static_run_id) if static_run_id else None
    report = sweep_report.write_report(cfg, rows, static=static, name=sweep["name"])
    for path in report.values():
        tracker.log_artifact(sweep["parent_run_id"], path, "sweep")
    reg = None
    if register and front:
        reg = registry.register_sweep(cfg, front, static_run_id=static_run_id, sweep=sweep["name"],
                                      tracker=tracker)
    tracker.log_metrics(sweep["parent_run_id"], {"sweep/trials": len(rows), "sweep/completed": len(done),
                                                 "sweep/front_size": len(front)}, step=0)
    tracker.end_run(sweep["parent_run_id"], "FINISHED" if done else "FAILED")
    return {"name": sweep["name"], "parent_run_id": sweep["parent_run_id"], "interrupted": False,
            "rows": rows,
            "front": front, "static_run_id": static_run_id, "report": report, "registry": reg}
