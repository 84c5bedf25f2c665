"""The command-line subcommands this package adds to ``invertavatar``."""
