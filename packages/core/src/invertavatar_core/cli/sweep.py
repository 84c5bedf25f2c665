"""``invertavatar sweep --config base.yaml --set key=a,b,c``: validate and run ablation points."""

import argparse

from invertavatar_core.config import default_registry, load_config_data
from invertavatar_core.sweep import Sweep

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``sweep`` command."""
    parser = subparsers.add_parser("sweep", help="run an ablation sweep over registry names and settings")
    parser.add_argument("--config", required=True, help="base experiment config (YAML or JSON)")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
        help="dotted override with one or more values (repeatable; the product is swept)",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    parser.add_argument("--out", default="runs/sweep", help="output folder (finished points are skipped)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate every point first, then list (or run) them."""
    sweep = Sweep(load_config_data(args.config), args.sets, default_registry())
    for point in sweep.points:
        print(point.slug)
    if args.dry_run:
        print(f"{len(sweep.points)} valid points")
        return 0
    from invertavatar_core.sweep_runner import run_point

    rows = sweep.run(run_point, args.out, progress=print)
    print(f"{len(rows)} points; results in {args.out}/results.md")
    return 0
