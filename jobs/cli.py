"""The `vared2` console entry point: one subcommand per module in `jobs/commands/`.

Each command module exposes `HELP`, `add_arguments(parser)` and `run(args) -> int`, and imports its
heavy dependencies (torch, Ray, MLflow) inside `run`, so `vared2 --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module under jobs.commands. A literal dict: grep finds what each one runs.
COMMANDS: dict[str, str] = {
    "demo": "jobs.commands.demo",
    "config": "jobs.commands.config",
    "preprocess": "jobs.commands.preprocess",
    "make-demo-data": "jobs.commands.make_demo_data",
    "flops": "jobs.commands.flops",
    "train": "jobs.commands.train",
    "evaluate": "jobs.commands.evaluate",
    "analyze": "jobs.commands.analyze",
    "tune": "jobs.commands.tune",
    "registry": "jobs.commands.registry",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vared2",
        description="VA-RED² video adaptive redundancy reduction: models, data, training, sweeps.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser, default_preset: str = "default") -> None:
    """`--preset NAME` plus trailing `key.path=value` overrides, shared by every config-driven command."""
    from pipeline.config import PRESETS

    parser.add_argument("--preset", default=default_preset, metavar="NAME",
                        help=f"config preset, one of: {', '.join(PRESETS)} (default: {default_preset})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. model.backbone=x3d_m train.lr=0.05")


def config_from_args(args: argparse.Namespace):
    from pipeline.config import load_config

    return load_config(args.preset, args.overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except ValueError as err:  # user errors: bad preset, key, value or argument
        print(f"vared2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
