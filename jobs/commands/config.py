"""Print the config a preset plus overrides resolves to, as JSON (what a run would use).

  vared2 config --preset demo model.search_space=3
"""

from __future__ import annotations

HELP = "print the resolved config of a preset and overrides"


def add_arguments(parser) -> None:
    from jobs.cli import add_config_arguments

    add_config_arguments(parser)


def run(args) -> int:
    from jobs.cli import config_from_args
    from pipeline.config import to_json

    print(to_json(config_from_args(args)))
    return 0
