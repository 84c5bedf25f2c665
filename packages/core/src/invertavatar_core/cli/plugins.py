"""``invertavatar plugins``: what is registered, by whom, and what failed to load."""

import argparse
import json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``plugins`` command."""
    parser = subparsers.add_parser(
        "plugins",
        help="list registered components and their providers",
        description="List every registered component (priors, encoders, aggregators, inverters, morphable "
        "models, landmark detectors, rasterizers, metrics) with the distribution that provides it, and any "
        "plugin that failed to load.",
        epilog="examples:\n  invertavatar plugins --kind aggregator\n  invertavatar plugins --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--kind", help="only this kind (prior, encoder, aggregator, ...)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    from invertavatar_core.config import default_registry
    from invertavatar_core.tables import format_table

    registry = default_registry()
    rows = [
        {"kind": e.kind, "name": e.name, "distribution": e.distribution, "description": e.description}
        for e in registry.entries(args.kind)
    ]
    problems = [{"plugin": p.plugin, "distribution": p.distribution, "error": p.error} for p in registry.problems]
    if args.json:
        print(json.dumps({"components": rows, "problems": problems}, indent=2))
        return 0
    if not rows and args.kind:
        print(
            f"no {args.kind} is registered; the plugin providing it may need an extra "
            "(e.g. landmark_detector: pip install 'invertavatar-faceverse[mediapipe]'); see 'invertavatar doctor'"
        )
        return 0
    print(format_table(rows, ["kind", "name", "distribution", "description"]))
    for problem in registry.problems:
        print(f"\nwarning: {problem}")
    return 0
