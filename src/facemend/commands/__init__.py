"""One module per `facemend` subcommand: `HELP`, `add_arguments(parser)`, `run(args) -> int`."""
