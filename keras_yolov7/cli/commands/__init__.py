"""One module per command: `add_parser(subparsers)` declares its options, `run(args)` does it."""
