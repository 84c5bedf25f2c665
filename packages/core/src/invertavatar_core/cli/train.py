"""``invertavatar train latent|oneshot|incremental --config FILE``: the three encoder training stages.

Run under torchrun for several processes (``torchrun --nproc-per-node 4 -m invertavatar_core.cli
train oneshot --config exp.yaml``). A run folder with a checkpoint resumes; the folder ends up
holding the model checkpoint that ``invertavatar reconstruct --checkpoint`` and the next stage's
``training.init_from`` read (docs/checkpoints.md).
"""

import argparse

from invertavatar_core.cli import cli_registry
from invertavatar_core.cli.experiment_args import (
    add_device_argument,
    add_experiment_arguments,
    add_progress_argument,
    experiment_from_args,
)
from invertavatar_core.training.stages import STAGES

__all__ = ["register"]

_DESCRIPTIONS = {
    "latent": "Stage 1: train E_latent (image -> w+ codes of the frozen prior) on renders of the prior, "
    "and on real frames when data.root is set. The prior is training.prior_weights (from 'invertavatar "
    "train prior'); without it the prior has random weights.",
    "oneshot": "Stage 2: train the one-shot texture (E_tex) and tri-plane (E_tri) encoders on top of stage 1 "
    "(training.init_from: the latent run folder).",
    "incremental": "Stage 3: train the recurrent decoders and the aggregator for frame-by-frame inversion, "
    "starting from stage 2 (training.init_from: the oneshot run folder).",
}
_PREVIOUS = {"latent": None, "oneshot": "latent", "incremental": "oneshot"}


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add ``train latent``, ``train oneshot`` and ``train incremental``."""
    for name, stage in STAGES.items():
        example = f"invertavatar train {name} --config experiment.yaml --steps 2000 --out runs/{name}"
        if _PREVIOUS[name]:
            example += f" \\\n      --set training.init_from=runs/{_PREVIOUS[name]}"
        parser = groups["train"].add_parser(
            name,
            help=stage.help,
            description=_DESCRIPTIONS[name],
            epilog=f"example:\n  {example}\n\nstart a config with 'invertavatar config init'.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_experiment_arguments(
            parser,
            config_help="experiment config (YAML or JSON)",
            set_example="training.batch_size=4",
            steps_key="training.steps",
        )
        parser.add_argument("--out", help="run folder (overrides training.out_dir)")
        add_device_argument(parser)
        add_progress_argument(parser)
        parser.set_defaults(func=run, train_stage=name)


def run(args: argparse.Namespace) -> int:
    """Train one stage; prints where the model checkpoint is."""
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_core.io.checkpoints import CONFIG_FILE, RUN_KIND
    from invertavatar_core.training.distributed import Runtime

    experiment = experiment_from_args(args, "training.out_dir")
    device = resolve_device(args.device)
    # A run folder resumes; any other non-empty folder is refused before any model is built.
    check_output_dir(experiment.training.out_dir, RUN_KIND, reuse=True, signature=(CONFIG_FILE, "checkpoints"),
                     what="training.out_dir")  # fmt: skip
    runtime = Runtime.from_env(device)
    try:
        scalars = STAGES[args.train_stage](experiment, cli_registry(), runtime, progress=not args.no_progress)
    finally:
        runtime.close()
    if runtime.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        print(f"finished {args.train_stage}: {summary}")
        print(f"model checkpoint: {experiment.training.out_dir}")
    return 0
