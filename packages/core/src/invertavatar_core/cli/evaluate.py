"""``invertavatar evaluate --config FILE``: the paper's protocols and metrics -> tables and plots.

    invertavatar evaluate --config exp.yaml [--set evaluation.protocols='["few_shot"]'] [--out DIR]

The experiment's ``evaluation`` section says which protocols, metrics, counts and models
(``evaluation.models``: label + model checkpoint + overrides, e.g. one per aggregator) to run;
``data.root`` is the dataset folder (``invertavatar preprocess`` / ``synth-heads`` layout, or the official
layout), ``null`` for sequences synthesised by the model's prior. Writes
``DIR/results.{md,csv,json}``, ``DIR/report.{md,json}`` (with the skipped metrics and why) and
PNG plots (metric vs number of source frames per model; source / driving / output grids).
"""

import argparse

from invertavatar_core.cli.experiment_args import (
    add_device_argument,
    add_experiment_arguments,
    add_progress_argument,
    experiment_from_args,
)

__all__ = ["EVALUATION_KIND", "register"]

EVALUATION_KIND = "evaluation"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of an evaluation output folder."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="run the paper's evaluation protocols and write tables and plots",
        description="Run the experiment's evaluation section: protocols (same-person, cross-person, few-shot), "
        "metrics and models, and write results.{md,csv,json}, report.{md,json} and PNG plots. Metrics whose "
        "weights are missing are skipped with the reason.",
        epilog="example:\n  invertavatar evaluate --config experiment.yaml "
        "--set evaluation.max_sequences=10 --out runs/eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(
        parser,
        config_help="experiment config (YAML or JSON) with an evaluation section",
        set_example="evaluation.max_sequences=10",
    )
    parser.add_argument("--out", help="output folder (overrides evaluation.out_dir)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print each row as it finishes, write the report."""
    from invertavatar_core.cli import cli_registry
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.evaluation.report import write_report
    from invertavatar_core.evaluation.runner import evaluate
    from invertavatar_core.evaluation.tables import format_table
    from invertavatar_core.io.atomic import check_output_dir, read_marker, write_marker

    experiment = experiment_from_args(args, "evaluation.out_dir")
    device = str(resolve_device(args.device))
    out_dir = check_output_dir(experiment.evaluation.out_dir, EVALUATION_KIND, reuse=True,
                               signature=("report.json",), what="evaluation.out_dir")  # fmt: skip
    report = evaluate(
        experiment,
        cli_registry(),
        device=device,
        progress=not args.no_progress,
        on_row=lambda row: print(format_table([row])),
    )
    if read_marker(out_dir) is None:
        write_marker(out_dir, EVALUATION_KIND)
    written = write_report(report, out_dir)
    for name, reason in report.skipped.items():
        print(f"skipped {name}: {reason}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"{len(report.rows)} rows, {len(written)} files in {experiment.evaluation.out_dir} (see report.md)")
    return 0
