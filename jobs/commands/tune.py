"""Sweep lambda_e, the search-space size S and any other config key with Ray Tune (one TorchTrainer
per trial), then log the Pareto front to MLflow and register the front models.

  vared2 tune --preset demo                                          # lambda_e x S, ASHA, 4 trials
  vared2 tune --preset demo --param train.lambda_e=grid:0,1,5 --param model.search_space=choice:2,3
  vared2 tune --preset demo --space sweep.yaml tune.scheduler=none tune.search=optuna
  vared2 tune --preset demo --name my-sweep --resume                 # continue an interrupted sweep

--param KEY=KIND:a,b with KIND loguniform, uniform, randint, choice, grid (KEY=value: a constant);
a --space YAML/JSON file maps keys the same way: {train.lambda_e: {loguniform: [0.01, 10]}}.
Sweep settings are config keys too: tune.num_samples, tune.scheduler (asha|none), tune.search
(random|optuna), tune.objective, tune.gflops_budget (for the champion alias), tune.max_concurrent.
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "Ray Tune sweep over lambda_e / S / any key; Pareto front in MLflow; registry"


def add_arguments(parser) -> None:
    from jobs.cli import add_config_arguments

    add_config_arguments(parser, default_preset="demo")
    parser.add_argument("--space", metavar="FILE", help="search space YAML/JSON file")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=KIND:a,b",
                        help="one search-space axis (repeatable); overrides --space for that key")
    parser.add_argument("--name", default="", help="sweep name (default: PRESET-sweep-TIMESTAMP)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep --name: finished trials are kept, the rest resume")
    parser.add_argument("--static-run", default=None, metavar="RUN_ID",
                        help="MLflow run of an existing static model for the static-baseline alias")
    parser.add_argument("--no-register", action="store_true", help="skip the model registry")


def load_spec(space_file: str | None, params: list[str]) -> dict | None:
    from pathlib import Path

    import yaml

    from pipeline.config.tune import parse_param, spec_from_mapping

    spec = {}
    if space_file:
        path = Path(space_file)
        if not path.exists():
            raise ValueError(f"--space {space_file}: no such file")
        spec.update(spec_from_mapping(yaml.safe_load(path.read_text())))  # YAML reads JSON too
    spec.update(dict(parse_param(p) for p in params))
    return spec or None


def run(args) -> int:
    from jobs.cli import config_from_args
    from jobs.registry import compare
    from jobs.tune import run_sweep

    cfg = config_from_args(args)
    if args.resume and not args.name:
        raise ValueError("--resume needs the --name of the sweep to continue")
    spec = load_spec(args.space, args.param)
    out = run_sweep(cfg, spec, name=args.name, resume=args.resume, static_run_id=args.static_run,
                    register=not args.no_register)
    if out["interrupted"]:
        return 130  # like a shell's Ctrl+C: the sweep is resumable, not failed
    if not out["front"]:
        print(f"sweep {out['name']}: no trial completed (see the trial errors above)")
        return 1
    print(out["report"]["md"].read_text())
    print(f"front: {[r['trial_id'] for r in out['front']]}; report in {out['report']['png'].parent}; "
          f"MLflow parent run {out['parent_run_id']}")
    if out["registry"]:
        compare(cfg, out["registry"]["name"], sweep=out["name"])
    return 0
