"""``invertavatar plugins``: what is registered, by which plugin and distribution, and what failed to load.

The PLUGIN column holds the names ``INVERTAVATAR_DISABLED_PLUGINS`` / ``INVERTAVATAR_PLUGINS`` take.
A name registered twice does not stop the listing: both providers are shown and the conflict is
reported (building a registry to run anything still refuses it).
"""

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
    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.plugin.manager import get_plugin_manager
    from invertavatar_core.plugin.registry import build_registry

    # Not cli_registry(): listing must not stop at a duplicate name, so this one keeps conflicts.
    registry = build_registry(get_plugin_manager(), strict=False)
    # A second provider of a name is listed right below the first.
    entries = [
        shown
        for e in registry.entries(args.kind)
        for shown in [e] + [c for c, _ in registry.conflicts if (c.kind, c.name) == (e.kind, e.name)]
    ]
    rows = [
        {
            "kind": e.kind,
            "name": e.name,
            "plugin": e.plugin,
            "distribution": e.distribution,
            "description": e.description,
        }
        for e in entries
    ]
    problems = [{"plugin": p.plugin, "distribution": p.distribution, "error": p.error} for p in registry.problems]
    conflicts = [message for e, message in registry.conflicts if args.kind in (None, e.kind)]
    skipped = [{"plugin": name, "distribution": dist, "reason": why} for name, (dist, why) in registry.skipped.items()]
    if args.json:
        listing = {"components": rows, "problems": problems, "conflicts": conflicts, "skipped": skipped}
        print(json.dumps(listing, indent=2))
        return 0
    if not rows and args.kind:
        print(
            f"no {args.kind} is registered; the plugin providing it may need an extra "
            "(e.g. landmark_detector: pip install 'invertavatar-faceverse[mediapipe]'); see 'invertavatar doctor'"
        )
        return 0
    print(format_table(rows, ["kind", "name", "plugin", "distribution", "description"]))
    for problem in registry.problems:
        print(f"\nwarning: {problem}")
    for message in conflicts:
        print(f"\nconflict: {message}")
    for row in skipped:
        print(f"\nnot loaded: plugin {row['plugin']!r} ({row['distribution']}): {row['reason']}")
    return 0
