"""`vared2 analyze`: every analysis of a trained or registered model written to one folder (tables,
images, summary.json, report.md) and logged under `analysis/` of the model's MLflow run.

    vared2 analyze runs/demo-r2plus1d_18-both/checkpoint_000005 --out analysis/demo
    vared2 analyze models:/vared2-demo@champion data.root=data/demo/shards --static runs/.../static

The model's MLflow run: the run behind a `models:/NAME@ALIAS` / `models:/NAME/VERSION` URI, the ID of
a `runs:/ID/...` URI, or `--run-id`; a plain checkpoint without `--run-id` is analysed offline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.models import load_trained
from pipeline.config import Config

if TYPE_CHECKING:  # torch and MLflow are imported where they are used, so `vared2 --help` stays fast
    import torch

    from jobs.tracking import Tracker

NOTE = "GFLOPs are multiply-accumulates (MACs) of conv and linear layers per clip, as in the paper and fvcore."


def class_names(cfg: Config) -> list[str] | None:
    """The class list written beside the shards (DATA.md), if there is one."""
    path = Path(cfg.data.root) / "classes.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def model_run_id(tracker: Tracker, source: str) -> str | None:
    """The MLflow run that produced `source`, when the source names one."""
    if source.startswith("runs:/"):
        return source[len("runs:/"):].split("/", 1)[0]
    if not source.startswith("models:/"):
        return None
    client = tracker.client
    ref = source[len("models:/"):].rstrip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias).run_id
    name, _, version = ref.partition("/")
    if version in ("", "latest"):
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ValueError(f"no registered model named {name!r}")
        return max(versions, key=lambda v: int(v.version)).run_id
    return client.get_model_version(name, version).run_id


def run_analysis(cfg: Config, model: torch.nn.Module, out_dir: str | Path, *, static_model=None,
                 max_clips: int | None = None, redundancy_clips: int = 16, extremes_per_class: int = 1,
                 tau: float = 0.85, title: str = "VA-RED² analysis", source: str = "",
                 device: str = "cpu") -> dict:
    """Write every artifact into `out_dir`; returns {"summary": ..., "files": [...], "figures": [...]}."""
    from pipeline.analysis import (collect_policies, measure_redundancy, write_clips, write_cost_distribution,
                                   write_policy_map, write_redundancy, write_redundancy_vs_cost, write_report)
    from pipeline.data import build_loader

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names(cfg)
    model = model.to(device)

    def loader():
        return build_loader(cfg.data, split=cfg.data.val_split, train=False)

    records = collect_policies(model, loader(), device=device, extremes_per_class=extremes_per_class,
                               max_clips=max_clips)
    cost = write_cost_distribution(records, out_dir, names)
    policy = write_policy_map(records, out_dir, names) if records.layers else None
    adaptivity = write_redundancy_vs_cost(records, out_dir, names) if records.num_clips >= 4 else None
    clips = write_clips(records, out_dir, names) if extremes_per_class else None
    static = (static_model if static_model is not None else model).to(device)
    redundancy = write_redundancy(measure_redundancy(static, loader(), tau=tau, max_clips=redundancy_clips,
                                                     device=device), out_dir)
    matching = cost["summary"]["gflops_avg"] / cost["summary"]["static_gflops"]
    baselines = {"model.prune_macs_ratio matching this model's GFLOPs avg": round(matching, 4),
                 "train it": f"vared2 train --preset {cfg.name} model.baseline=magnitude "
                             f"model.prune_macs_ratio={matching:.4f}"}
    meta = {"source": source, "backbone": cfg.model.backbone, "dynamic": cfg.model.dynamic,
            "baseline": getattr(cfg.model, "baseline", "none"), "search_space": cfg.model.search_space,
            "input": f"{cfg.data.num_frames}x{cfg.data.crop_size}x{cfg.data.crop_size}",
            "clips analysed": records.num_clips, "redundancy clips": redundancy["table"]["num_clips"][0].as_py(),
            "redundancy model": "given static model" if static_model is not None
            else "this model with every layer at its full variant"}
    report = write_report(out_dir, title=title, meta=meta, cost=cost, policy=policy, clips=clips,
                          redundancy=redundancy, baselines=baselines, adaptivity=adaptivity)
    summary = {"note": NOTE, "meta": meta, "cost": cost["summary"], "redundancy": redundancy["overall"],
               "policy_blocks": policy["blocks"] if policy else {}, "matching_prune_macs_ratio": matching,
               "redundancy_vs_cost": adaptivity["summary"] if adaptivity else {}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    figures = [f for part in (cost, policy, adaptivity, clips, redundancy) if part for f in part["figures"]]
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    return {"summary": summary, "files": files, "figures": figures, "report": report}


def analyze_source(source: str, overrides=(), *, out: str = "", static: str = "", max_clips: int = 0,
                   redundancy_clips: int = 16, extremes: int = 1, tau: float = 0.85, run_id: str = "",
                   log_to_mlflow: bool = True, tracker: Tracker | None = None) -> dict:
    """`vared2 analyze`: load `source` (checkpoint or MLflow URI), write every analysis to `out`
    (default analysis/<config name>), print the headline numbers and log the files to the model's
    MLflow run (or `run_id`) in `tracker` (default: the loaded config's store); returns
    `run_analysis`'s result."""
    from jobs.tracking import Tracker

    if max_clips < 0 or redundancy_clips < 1 or extremes < 0:
        raise ValueError("--max-clips >= 0, --redundancy-clips >= 1 and --extremes >= 0 are required")
    cfg, model = load_trained(source, overrides)
    static_model = load_trained(static, overrides)[1] if static else None
    out_dir = Path(out or f"analysis/{cfg.name}")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run_analysis(cfg, model, out_dir, static_model=static_model, max_clips=max_clips or None,
                          redundancy_clips=redundancy_clips, extremes_per_class=extremes,
                          tau=tau, source=source, device=device, title=f"VA-RED² analysis of {source}")
    s = result["summary"]["cost"]
    print(f"{s['num_clips']} clips: GFLOPs avg {s['gflops_avg']:.4g} (max {s['gflops_max']:.4g}, "
          f"min {s['gflops_min']:.4g}), static {s['static_gflops']:.4g}. {NOTE}")
    a = result["summary"]["redundancy_vs_cost"]
    if a:
        print(f"cost vs clip redundancy: Spearman {a['spearman']:.2f}, most redundant quarter at "
              f"{a['most_redundant_cost']:.3f} of static, least redundant at {a['least_redundant_cost']:.3f} "
              f"({a['quartile_cost_ratio']:.2f}x)")
    for axis, m in result["summary"]["redundancy"].items():
        print(f"redundancy {axis:8s} CC {m['cc']:.3f}  RMSE {m['rmse']:.3f}  RP {m['rp']:.3f}")
    print(f"report: {result['report']}")
    tracker = tracker or Tracker(cfg.runtime)
    run_id = run_id or (model_run_id(tracker, source) if log_to_mlflow else None)
    if run_id and log_to_mlflow:
        for path in result["files"]:
            tracker.log_artifact(run_id, path, "analysis")
        print(f"logged {len(result['files'])} files to MLflow run {run_id} under analysis/")
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.analyze ...` = `vared2 analyze ...`."""
    from jobs.cli import main as cli

    return cli(["analyze", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
