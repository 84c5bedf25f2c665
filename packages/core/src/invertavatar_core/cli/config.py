"""``invertavatar config init|show|schema``: start a config from a preset, print one resolved, a component schema."""

import argparse
import json

from invertavatar_core.cli import cli_registry

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``config`` command group."""
    parser = subparsers.add_parser(
        "config",
        help="start, show and document experiment configs",
        description="Experiment configs: start one from a size preset, print one fully resolved (every default "
        "filled in), or the JSON schema of one component's settings.",
        epilog="examples:\n  invertavatar config init --preset tiny > experiment.yaml\n"
        "  invertavatar config show experiment.yaml\n  invertavatar config schema aggregator conv_gru",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    init = sub.add_parser(
        "init",
        help="print a commented starting config of a size preset",
        description=(
            "Print the experiment config (or, with --kind prior, the prior-training config) of a size preset as "
            "commented YAML: tiny (CPU seconds), small (CPU hours) or paper (the published sizes; a large GPU). "
            "Example: invertavatar config init --preset tiny > experiment.yaml"
        ),
    )
    # config.presets.PRESETS, spelled out: building the command line imports no configs (a test compares them).
    init.add_argument(
        "--preset", choices=("tiny", "small", "paper"), default="tiny", help="size preset (default: tiny)"
    )
    init.add_argument(
        "--kind",
        choices=("experiment", "prior"),
        default="experiment",
        help="experiment (train latent|oneshot|incremental, evaluate, sweep) or prior (train prior)",
    )
    init.set_defaults(func=run_init)
    show = sub.add_parser("show", help="print the fully resolved config of an experiment file")
    show.add_argument("file", help="YAML or JSON experiment config")
    show.set_defaults(func=run_show)
    schema = sub.add_parser("schema", help="print the JSON schema of one component's config")
    schema.add_argument("kind", help="prior, encoder, aggregator, morphable_model, ...")
    schema.add_argument("name", help="registry name")
    schema.set_defaults(func=run_schema)


def run_init(args: argparse.Namespace) -> int:
    """Print the preset's commented YAML."""
    from invertavatar_core.config.presets import preset_experiment_yaml

    registry = cli_registry()
    if args.kind == "experiment":
        print(preset_experiment_yaml(registry, args.preset), end="")
        return 0
    try:
        from invertavatar_prior_next3d.training_presets import preset_prior_training_yaml
    except ImportError:
        raise ValueError(
            "config init --kind prior needs invertavatar-prior-next3d (pip install 'invertavatar-core[prior-next3d]')"
        ) from None
    print(preset_prior_training_yaml(registry, args.preset), end="")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the resolved experiment config as JSON."""
    from invertavatar_core.config.experiment import load_experiment

    print(load_experiment(args.file, cli_registry()).model_dump_json(indent=2))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """Print a component config's JSON schema."""
    config_cls = cli_registry().config_cls(args.kind, args.name)
    print(json.dumps(config_cls.model_json_schema(), indent=2))
    return 0
