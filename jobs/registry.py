"""The MLflow model registry for sweep results: front models as versions of one registered model.

Each version carries tags (lambda_e, S, GFLOPs avg/max/min, clip-1, video-1, dataset, a hash of the
shard manifests it was trained on, git commit). Aliases: `champion` = the most accurate front model
within the user's GFLOPs budget (`tune.gflops_budget`), `static-baseline` = the static model.
`compare` prints the versions side by side against the static baseline.

    vared2 registry compare --name vared2-demo
    vared2 evaluate models:/vared2-demo@champion
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from jobs import tracking
from pipeline.config import Config

CHAMPION = "champion"
STATIC = "static-baseline"
METRIC_TAGS = {"gflops_avg": "test/gflops_avg", "gflops_max": "test/gflops_max",
               "gflops_min": "test/gflops_min", "clip_top1": "test/clip_top1",
               "video_top1": "test/video_top1"}


def manifest_hash(data_root: str | Path) -> str:
    """sha256 over the `*-manifest.parquet` files of the shard folder (names and bytes)."""
    files = sorted(Path(data_root).glob("*-manifest.parquet"))
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_summary(cfg: Config, run_id: str) -> dict:
    """lambda_e, S, dynamic mode and the final test metrics of a finished training run."""
    run = tracking.client(cfg).get_run(run_id)
    p, m = run.data.params, run.data.metrics
    return {"run_id": run_id, "lambda_e": float(p.get("train.lambda_e", "nan")),
            "S": int(p.get("model.search_space", 0)), "dynamic": p.get("model.dynamic", "?"),
            "data_root": p.get("data.root", ""),
            **{k: m[v] for k, v in METRIC_TAGS.items() if v in m}}


def register_run(cfg: Config, name: str, run_id: str, extra_tags: dict | None = None):
    """A version of `name` for the model logged by `run_id` (the existing one if already there)."""
    import mlflow

    c = tracking.client(cfg)
    existing = c.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return max(existing, key=lambda v: int(v.version))
    s = run_summary(cfg, run_id)
    tags = {"lambda_e": f"{s['lambda_e']:.6g}", "S": str(s["S"]), "dynamic": s["dynamic"],
            **{k: f"{s[k]:.6g}" for k in METRIC_TAGS if k in s},
            "dataset": s["data_root"], "manifest_hash": manifest_hash(s["data_root"]),
            "git_commit": git_commit(), **(extra_tags or {})}
    return mlflow.register_model(f"runs:/{run_id}/model", name, tags=tags)


def register_sweep(cfg: Config, front: list[dict], *, static_run_id: str | None, sweep: str) -> dict:
    """Register the front (and the static model); set `champion` and `static-baseline`."""
    from pipeline.train.pareto import best_within_budget

    name = cfg.runtime.registered_model
    c = tracking.client(cfg)
    versions = [register_run(cfg, name, r["run_id"], {"sweep": sweep, "on_front": "true"}) for r in front]
    points = [(r[f"test/{cfg.tune.objective}"], r["test/gflops_avg"]) for r in front]
    budget = cfg.tune.gflops_budget or None
    champion = versions[best_within_budget(points, budget)]
    c.set_registered_model_alias(name, CHAMPION, champion.version)
    out = {"name": name, "versions": [v.version for v in versions], "champion": champion.version,
           "static": None, "budget": budget}
    if static_run_id:
        static = register_run(cfg, name, static_run_id, {"sweep": sweep})
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
    c = tracking.client(cfg)
    name = name or cfg.runtime.registered_model
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        known = [m.name for m in c.search_registered_models()]
        raise ValueError(f"no registered model {name!r} in {tracking.tracking_uri(cfg)}; "
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
