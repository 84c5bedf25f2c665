"""``invertavatar sweep --config base.yaml --set key=a,b,c``: validate and run ablation points."""

import argparse

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument, add_set_argument

__all__ = ["SWEEP_KIND", "register"]

SWEEP_KIND = "sweep"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of a sweep output folder (finished points resume)."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``sweep`` command."""
    parser = subparsers.add_parser(
        "sweep",
        help="run an ablation sweep over registry names and settings",
        description="Expand --set values into the product of sweep points, validate every point first, then "
        "train and/or evaluate each into its own folder; finished points are skipped, so a sweep resumes.",
        epilog="examples:\n"
        "  invertavatar sweep --config experiment.yaml --set aggregator.name=conv_gru,conv_fusion,mean --dry-run\n"
        "  invertavatar sweep --config experiment.yaml --set aggregator.name=conv_gru,mean --train incremental",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="base experiment config (YAML or JSON)")
    add_set_argument(parser, "aggregator.name=conv_gru,mean", sweep=True)
    parser.add_argument("--dry-run", action="store_true", help="validate and list the points, run nothing")
    parser.add_argument("--out", default="runs/sweep", help="output folder (finished points are skipped)")
    parser.add_argument(
        "--train",
        dest="stages",
        action="append",
        default=[],
        metavar="STAGE",
        help="train this stage at every point first (latent / oneshot / incremental; repeatable, in order)",
    )
    parser.add_argument("--no-evaluate", action="store_true", help="only train; do not evaluate the points")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate every point first (configs, stages, data), then list (or run) them."""
    import functools

    from invertavatar_core.cli import cli_registry
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.config.experiment import load_config_data
    from invertavatar_core.config.sweep import Sweep
    from invertavatar_core.errors import UserError
    from invertavatar_core.evaluation.sweep_runner import check_point, run_point
    from invertavatar_core.io.atomic import check_output_dir, read_marker, write_marker

    if not args.dry_run:  # a dry run writes nothing
        check_output_dir(args.out, SWEEP_KIND, reuse=True, signature=("results.md",))
    sweep = Sweep(load_config_data(args.config), args.sets, cli_registry())
    evaluate = not args.no_evaluate
    problems = [
        f"point [{p.slug}]: {why}"
        for p in sweep.points
        for why in check_point(p, stages=args.stages, evaluate=evaluate)
    ]
    if problems:
        raise UserError(f"{len(problems)} problem(s); nothing was run:\n" + "\n".join(problems))
    for point in sweep.points:
        print(point.slug)
    if args.dry_run:
        print(f"{len(sweep.points)} valid points")
        return 0
    device = str(resolve_device(args.device))
    if read_marker(args.out) is None:
        write_marker(args.out, SWEEP_KIND)
    runner = functools.partial(
        run_point, stages=tuple(args.stages), evaluate=evaluate, device=device, progress=not args.no_progress
    )
    settings = {"stages": list(args.stages), "evaluate": evaluate}  # a point trained differently is not done
    rows = sweep.run(runner, args.out, settings=settings, progress=print)
    print(f"{len(rows)} points; results in {args.out}/results.md")
    return 0
