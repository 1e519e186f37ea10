"""One module per `vared2` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
