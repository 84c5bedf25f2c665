"""``invertavatar train latent|oneshot|incremental --config FILE``: the three encoder training stages.

Run under torchrun for several processes (``torchrun --nproc-per-node 4 -m invertavatar_core.cli
train oneshot --config exp.yaml``). A run folder with a checkpoint resumes; the folder ends up
holding the model checkpoint that ``invertavatar reconstruct --checkpoint`` and the next stage's
``training.init_from`` read (docs/checkpoints.md).
"""

import argparse

from invertavatar_core.cli import cli_registry
from invertavatar_core.cli.experiment_args import add_experiment_arguments, experiment_from_args
from invertavatar_core.io.atomic import check_output_dir
from invertavatar_core.io.checkpoints import CONFIG_FILE, RUN_KIND
from invertavatar_core.training.stages import STAGES

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add ``train latent``, ``train oneshot`` and ``train incremental``."""
    for name, stage in STAGES.items():
        parser = groups["train"].add_parser(name, help=stage.help)
        add_experiment_arguments(
            parser, config_help="experiment config (YAML or JSON)", set_example="training.steps=2000"
        )
        parser.add_argument("--out", help="run folder (overrides training.out_dir)")
        parser.add_argument("--device", help="cpu / cuda (default: cuda when available)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.set_defaults(func=run, train_stage=name)


def run(args: argparse.Namespace) -> int:
    """Train one stage; prints where the model checkpoint is."""
    from invertavatar_core.training.distributed import Runtime

    experiment = experiment_from_args(args, "training.out_dir")
    # A run folder resumes; any other non-empty folder is refused before any model is built.
    check_output_dir(experiment.training.out_dir, RUN_KIND, reuse=True, signature=(CONFIG_FILE, "checkpoints"),
                     what="training.out_dir")  # fmt: skip
    runtime = Runtime.from_env(args.device)
    try:
        scalars = STAGES[args.train_stage](experiment, cli_registry(), runtime, progress=not args.no_progress)
    finally:
        runtime.close()
    if runtime.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        print(f"finished {args.train_stage}: {summary}")
        print(f"model checkpoint: {experiment.training.out_dir}")
    return 0
