"""The main job on embedded defaults (what `make demo` runs), on a local Ray instance:

  1. generate the digits demo videos (4 classes that differ in temporal redundancy) + Kinetics CSVs
  2. shard them into WebDataset tars with Ray tasks
  3. train the static R(2+1)D baseline, then VA-RED² from it, on Ray Train with 2 CPU workers
  4. evaluate both under the hard policy and print GFLOPs avg/max/min, clip-1, video-1, speed

Everything is tracked in the local MLflow store sqlite:///mlruns.db. Re-running reuses the data.

  vared2 demo
  vared2 demo train.epochs=2          # overrides apply to both trainings
"""

from __future__ import annotations

QUIET = True  # Ray's and MLflow's messages go to a log file (jobs/console.py)
HELP = "run the end-to-end demo (data -> shards -> static + VA-RED² training -> table)"


def add_arguments(parser) -> None:
    parser.add_argument("--root", default="data/demo", help="where the demo data goes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the demo preset, e.g. train.epochs=2")


def run(args) -> int:
    from jobs.demo import run_demo

    run_demo(args.root, args.overrides)
    return 0
