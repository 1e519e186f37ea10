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
    "verify": "jobs.commands.verify",
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
        if getattr(module, "QUIET", False):
            p.add_argument("--verbose", action="store_true",
                           help="show Ray's and MLflow's own messages here too (default: in a log "
                                "file under logs/, whose path is printed)")
        p.set_defaults(_module=module)
    return parser


def parse_command(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Options and KEY=VALUE overrides in any order (`vared2 analyze CKPT --out DIR data.root=X`):
    each (sub)command's own parser reads its arguments intermixed; argparse alone stops taking
    positionals after the first option."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return parser.parse_intermixed_args(argv)
    action = subs[0]
    name = next((a for a in argv if not a.startswith("-")), None)
    index = argv.index(name) if name in action.choices else -1
    if index < 0 or argv[:index]:  # --help, an unknown command, or options before it: argparse's way
        return parser.parse_args(argv)
    ns = parse_command(action.choices[name], argv[index + 1:])
    setattr(ns, action.dest, name)
    for key, value in parser._defaults.items():
        if not hasattr(ns, key):
            setattr(ns, key, value)
    return ns


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
    args = parse_command(parser, list(sys.argv[1:] if argv is None else argv))
    if not getattr(args._module, "QUIET", False):
        return _run(args)
    from jobs import console

    if not console.wanted(args.verbose):
        return _run(args)
    path = console.log_path(args.command)
    print(f"(Ray's and MLflow's own messages: {path}; --verbose shows them here)", flush=True)
    try:
        with console.filtered(path):
            code = _run(args)
            _stop_ray()  # its log monitor's last lines, still through the filter
    except BaseException:  # its traceback follows, on the restored console
        print(f"the full log, with Ray's and MLflow's messages: {path}", file=sys.stderr)
        raise
    if code not in (0, 130):
        print(f"the full log, with Ray's and MLflow's messages: {path}", file=sys.stderr)
    return code


def _stop_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args._module.run(args) or 0)
    except ValueError as err:  # user errors: bad preset, key, value or argument
        print(f"vared2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
