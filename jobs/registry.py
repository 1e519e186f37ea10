"""The MLflow model registry for sweep results: front models as versions of one registered model.

Each version carries tags (lambda_e, S, GFLOPs avg/max/min, clip-1, video-1, dataset, a hash of the
shard manifests it was trained on, git commit). Aliases: `champion` = the most accurate front model
within the user's GFLOPs budget (`tune.gflops_budget`), `static-baseline` = the static model.
`compare` prints the versions side by side against the static baseline.

    vared2 registry compare --name vared2-demo
    vared2 evaluate models:/vared2-demo@champion
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from jobs.tracking import Tracker, manifest_hash
from pipeline.config import Config

CHAMPION = "champion"
STATIC = "static-baseline"
METRIC_TAGS = {"gflops_avg": "test/gflops_avg", "gflops_max": "test/gflops_max",
               "gflops_min": "test/gflops_min", "clip_top1": "test/clip_top1",
               "video_top1": "test/video_top1"}
BUDGET_NOTE = ("`budget` is a fraction of the static model's GFLOPs (0.6); 1.0 runs the static model exactly, "
               "0 (the default) the trained policy")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_summary(tracker: Tracker, run_id: str) -> dict:
    """lambda_e, S, dynamic mode, shapes and the final test metrics of a finished training run."""
    run = tracker.client.get_run(run_id)
    p, m = run.data.params, run.data.metrics
    return {"run_id": run_id, "lambda_e": float(p.get("train.lambda_e", "nan")),
            "S": int(p.get("model.search_space", 0)), "dynamic": p.get("model.dynamic", "?"),
            "backbone": p.get("model.backbone", "?"), "num_classes": p.get("model.num_classes", "K"),
            "clip_shape": f"(N, 3, {p.get('data.num_frames', 'T')}, {p.get('data.crop_size', 'H')}, "
                          f"{p.get('data.crop_size', 'W')})",
            "data_root": p.get("data.root", ""),
            **{k: m[v] for k, v in METRIC_TAGS.items() if v in m}}


def how_to_load(model_uri: str, clip_shape: str, num_classes, *, dynamic: bool = True) -> str:
    params = ', params={"budget": 0.6}' if dynamic else ""
    text = (f'Load: `mlflow.pyfunc.load_model("{model_uri}").predict(clips{params})`: clips float32 '
            f"{clip_shape}, normalised like the loaders' output, to logits (N, {num_classes}).")
    return f"{text} {BUDGET_NOTE}." if dynamic else text


def version_description(s: dict, name: str, version: str) -> str:
    """What a registered version is and how to load it, from its `run_summary`."""
    dynamic = s["dynamic"] != "none"
    what = (f"VA-RED² {s['backbone']}, dynamic={s['dynamic']}, S={s['S']}, lambda_e={s['lambda_e']:.6g}"
            if dynamic else f"Static {s['backbone']} (no dynamic layers: one fixed cost)")
    if "gflops_avg" in s:
        what += (f"; {s['gflops_avg']:.4g} GFLOPs avg per clip (max {s.get('gflops_max', float('nan')):.4g}, "
                 f"min {s.get('gflops_min', float('nan')):.4g}; multiply-accumulates, hard policy)")
    if "clip_top1" in s:
        what += f"; clip-1 {s['clip_top1']:.3f}, video-1 {s.get('video_top1', float('nan')):.3f}"
    return (f"{what}. Trained on {s['data_root']} (MLflow run {s['run_id']}).\n\n"
            + how_to_load(f"models:/{name}/{version}", s["clip_shape"], s["num_classes"], dynamic=dynamic))


def model_description(cfg: Config, name: str) -> str:
    """The registered model's description: what its versions are, its aliases, how to load one."""
    shape = f"(N, 3, {cfg.data.num_frames}, {cfg.data.crop_size}, {cfg.data.crop_size})"
    return "\n\n".join([
        f"VA-RED² video classifiers ({cfg.model.backbone}) from the sweeps of experiment "
        f"{cfg.runtime.experiment!r}: the Pareto-front models of accuracy against GFLOPs and the static "
        "baseline of the same shape, one version each (its description and tags say which).",
        f"Aliases: `{CHAMPION}`, the most accurate front model within `tune.gflops_budget`; `{STATIC}`, "
        "the static model.",
        how_to_load(f"models:/{name}@{CHAMPION}", shape, cfg.model.num_classes)])


def register_run(tracker: Tracker, name: str, run_id: str, extra_tags: dict | None = None):
    """A version of `name` for the model logged by `run_id` (the existing one if already there),
    described by `version_description`."""
    existing = tracker.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return max(existing, key=lambda v: int(v.version))
    s = run_summary(tracker, run_id)
    tags = {"lambda_e": f"{s['lambda_e']:.6g}", "S": str(s["S"]), "dynamic": s["dynamic"],
            **{k: f"{s[k]:.6g}" for k in METRIC_TAGS if k in s},
            "dataset": s["data_root"], "manifest_hash": manifest_hash(s["data_root"]),
            "git_commit": git_commit(), **(extra_tags or {})}
    version = tracker.register_model(run_id, name, tags=tags)
    return tracker.client.update_model_version(name, version.version,
                                               description=version_description(s, name, version.version))


def register_sweep(cfg: Config, front: list[dict], *, static_run_id: str | None, sweep: str,
                   tracker: Tracker | None = None) -> dict:
    """Register the front (and the static model); set `champion` and `static-baseline`; describe
    the registered model when it has no description yet."""
    from pipeline.train.pareto import best_within_budget

    name = cfg.runtime.registered_model
    tracker = tracker or Tracker(cfg.runtime)
    c = tracker.client
    versions = [register_run(tracker, name, r["run_id"], {"sweep": sweep, "on_front": "true"}) for r in front]
    if not c.get_registered_model(name).description:
        c.update_registered_model(name, description=model_description(cfg, name))
    points = [(r[f"test/{cfg.tune.objective}"], r["test/gflops_avg"]) for r in front]
    budget = cfg.tune.gflops_budget or None
    champion = versions[best_within_budget(points, budget)]
    c.set_registered_model_alias(name, CHAMPION, champion.version)
    out = {"name": name, "versions": [v.version for v in versions], "champion": champion.version,
           "static": None, "budget": budget}
    if static_run_id:
        static = register_run(tracker, name, static_run_id, {"sweep": sweep})
        c.set_registered_model_alias(name, STATIC, static.version)
        out["static"] = static.version
    print(f"registered {name} versions {out['versions']}; {CHAMPION} = v{champion.version}"
          f"{f' (budget {budget} GFLOPs)' if budget else ''}; {STATIC} = v{out['static']}")
    return out


def _f(tags: dict, key: str) -> float:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return float("nan")


def compare(cfg: Config, name: str | None = None, *, sweep: str | None = None) -> str:
    """A table of the versions of `name` (default runtime.registered_model), cheapest first, with
    accuracy and GFLOPs relative to the `static-baseline` version; printed and returned."""
    tracker = Tracker(cfg.runtime)
    c = tracker.client
    name = name or cfg.runtime.registered_model
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        known = [m.name for m in c.search_registered_models()]
        raise ValueError(f"no registered model {name!r} in {tracker.uri}; "
                         f"registered: {', '.join(known) or 'none'}") from None
    versions = c.search_model_versions(f"name='{name}'")
    if sweep:
        versions = [v for v in versions if v.tags.get("sweep") == sweep]
    if not versions:
        raise ValueError(f"registered model {name!r} has no versions"
                         f"{f' from sweep {sweep!r}' if sweep else ''}")
    aliases: dict[str, list[str]] = {}
    for alias, version in c.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    static = next((v for v in versions if STATIC in aliases.get(str(v.version), [])), None)
    if static is None and STATIC in aliases_of(c, name):
        static = c.get_model_version_by_alias(name, STATIC)
    base_acc = _f(static.tags, "clip_top1") if static else float("nan")
    base_gf = _f(static.tags, "gflops_avg") if static else float("nan")
    head = (f"{'version':>7s} {'aliases':24s} {'dynamic':8s} {'lambda_e':>9s} {'S':>2s} "
            f"{'GFLOPs avg':>10s} {'max':>8s} {'min':>8s} {'clip-1':>7s} {'video-1':>7s} "
            f"{'d clip-1':>8s} {'GFLOPs/static':>13s}")
    lines = [f"registered model {name!r}: {len(versions)} versions "
             f"(GFLOPs = multiply-accumulates per clip, hard policy; d = vs {STATIC})", head,
             "-" * len(head)]
    for v in sorted(versions, key=lambda v: (_f(v.tags, "gflops_avg"), int(v.version))):
        t = v.tags
        lines.append(
            f"{'v' + str(v.version):>7s} {','.join(sorted(aliases.get(str(v.version), []))) or '-':24s} "
            f"{t.get('dynamic', '?'):8s} {_f(t, 'lambda_e'):9.3g} {t.get('S', '?'):>2s} "
            f"{_f(t, 'gflops_avg'):10.5f} {_f(t, 'gflops_max'):8.5f} {_f(t, 'gflops_min'):8.5f} "
            f"{_f(t, 'clip_top1'):7.3f} {_f(t, 'video_top1'):7.3f} "
            f"{_f(t, 'clip_top1') - base_acc:+8.3f} {_f(t, 'gflops_avg') / base_gf:13.3f}")
    from jobs.budget_curve import curve_lines

    for v in sorted(versions, key=lambda v: int(v.version)):
        curve = curve_lines(c.get_run(v.run_id).data.metrics) if v.run_id else []
        if curve:
            lines.append(f"v{v.version} budget curve (one model, `vared2 evaluate --budget`): " + "; ".join(curve))
    table = "\n".join(lines)
    print(table)
    return table


def aliases_of(c, name: str) -> dict:
    return dict(c.get_registered_model(name).aliases)
