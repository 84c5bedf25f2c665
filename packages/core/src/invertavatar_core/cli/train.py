"""``invertavatar train latent|oneshot|incremental --config FILE``: the three encoder training stages.

Run under torchrun for several processes (``torchrun --nproc-per-node 4 -m invertavatar_core.cli
train oneshot --config exp.yaml``). A run folder with a checkpoint resumes; the folder ends up
holding the model checkpoint that ``invertavatar reconstruct --checkpoint`` and the next stage's
``training.init_from`` read (docs/checkpoints.md).
"""

import argparse
import importlib

from invertavatar_core.cli.experiment_args import (
    add_device_argument,
    add_experiment_arguments,
    add_progress_argument,
    experiment_from_args,
)

__all__ = ["STAGES", "register"]

STAGES: dict[str, tuple[str, str, str]] = {
    "latent": ("invertavatar_core.train_latent", "train_latent", "stage 1: E_latent (Eq. 2)"),
    "oneshot": ("invertavatar_core.train_oneshot", "train_oneshot", "stage 2: one-shot E_tex + E_tri (Eq. 3)"),
    "incremental": (
        "invertavatar_core.train_incremental",
        "train_incremental",
        "stage 3: recurrent decoders (Eq. 1, 3)",
    ),
}
"""Stage name -> (module, function, help)."""

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
    for stage, (_, _, help_text) in STAGES.items():
        example = f"invertavatar train {stage} --config experiment.yaml --steps 2000 --out runs/{stage}"
        if _PREVIOUS[stage]:
            example += f" \\\n      --set training.init_from=runs/{_PREVIOUS[stage]}"
        parser = groups["train"].add_parser(
            stage,
            help=help_text,
            description=_DESCRIPTIONS[stage],
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
        parser.set_defaults(func=run, train_stage=stage)


def run(args: argparse.Namespace) -> int:
    """Train one stage; prints where the model checkpoint is."""
    from invertavatar_core.compute import resolve_device
    from invertavatar_core.config import default_registry
    from invertavatar_core.distributed import Runtime

    experiment = experiment_from_args(args, "training.out_dir")
    module, function, _ = STAGES[args.train_stage]
    train = getattr(importlib.import_module(module), function)
    runtime = Runtime.from_env(resolve_device(args.device))
    try:
        scalars = train(experiment, default_registry(), runtime, progress=not args.no_progress)
    finally:
        runtime.close()
    if runtime.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        print(f"finished {args.train_stage}: {summary}")
        print(f"model checkpoint: {experiment.training.out_dir}")
    return 0
