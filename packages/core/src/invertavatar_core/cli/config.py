"""``invertavatar config show FILE`` and ``invertavatar config schema KIND NAME``."""

import argparse
import json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``config`` command group."""
    parser = subparsers.add_parser(
        "config",
        help="show resolved experiment configs and component schemas",
        description="Experiment configs: print one fully resolved (every default filled in), or the JSON "
        "schema of one component's settings.",
        epilog="examples:\n  invertavatar config show experiment.yaml\n  invertavatar config schema aggregator conv_gru",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser("show", help="print the fully resolved config of an experiment file")
    show.add_argument("file", help="YAML or JSON experiment config")
    show.set_defaults(func=run_show)
    schema = sub.add_parser("schema", help="print the JSON schema of one component's config")
    schema.add_argument("kind", help="prior, encoder, aggregator, morphable_model, ...")
    schema.add_argument("name", help="registry name")
    schema.set_defaults(func=run_schema)


def run_show(args: argparse.Namespace) -> int:
    """Print the resolved experiment config as JSON."""
    from invertavatar_core.config import load_experiment

    print(load_experiment(args.file).model_dump_json(indent=2))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """Print a component config's JSON schema."""
    from invertavatar_core.config import default_registry

    config_cls = default_registry().config_cls(args.kind, args.name)
    print(json.dumps(config_cls.model_json_schema(), indent=2))
    return 0
