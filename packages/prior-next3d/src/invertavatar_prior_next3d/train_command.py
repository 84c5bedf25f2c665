"""``invertavatar train prior --config FILE``: train the animatable 3D GAN prior (supplement 6.1).

The file (YAML or JSON) holds a :class:`~invertavatar_prior_next3d.training.PriorTrainingConfig`;
``--set``, ``--out`` and ``--steps`` override its fields. Run it under ``torchrun
--nproc-per-node N`` for N processes; a run folder that holds a checkpoint is resumed.
"""

import argparse
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument, add_set_argument

__all__ = ["register", "run"]


def register(train_group: argparse._SubParsersAction) -> None:
    """Add ``prior`` to the ``invertavatar train`` group."""
    parser = train_group.add_parser(
        "prior",
        help="train the animatable 3D GAN prior (next3d) as a 3D-aware GAN",
        description=(
            "Train the animatable 3D GAN prior from a YAML/JSON PriorTrainingConfig. A run folder that holds a "
            "checkpoint is resumed; run under 'torchrun --nproc-per-node N' for N processes. The trained G_ema is "
            "exported to <out_dir>/prior (what the encoder stages' training.prior_weights reads)."
        ),
        epilog="example:\n  invertavatar train prior --config prior.yaml --steps 20000 --out runs/prior\n"
        "  then set training.prior_weights: runs/prior/prior in the experiment config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML/JSON PriorTrainingConfig")
    parser.add_argument("--out", type=Path, help="run folder (overrides out_dir)")
    add_set_argument(parser, "batch_size=8")
    parser.add_argument("--steps", type=int, default=None, help="training steps (overrides steps)")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, train (or resume), print where the exported prior is."""
    # Imported here so that building the command line never imports torch models.
    from invertavatar_core.cli.experiment_args import single_overrides
    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.config.experiment import default_registry, load_config_data
    from invertavatar_core.config.sweep import apply_overrides
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_core.io.checkpoints import RUN_KIND
    from invertavatar_core.training.distributed import Runtime
    from invertavatar_prior_next3d.training import PRIOR_DIR, PriorTrainingConfig, train_prior

    overrides = single_overrides(args.sets)
    if args.out is not None:
        overrides.append(("out_dir", str(args.out)))
    if args.steps is not None:
        overrides.append(("steps", args.steps))
    data = apply_overrides(load_config_data(args.config), overrides)
    registry = default_registry()
    config = PriorTrainingConfig.model_validate(data, context={"registry": registry})
    device = resolve_device(args.device)
    # A run folder resumes; any other non-empty folder is refused before any model is built.
    check_output_dir(config.out_dir, RUN_KIND, reuse=True, signature=("config.json", "checkpoints"), what="out_dir")
    runtime = Runtime.from_env(device)
    try:
        scalars = train_prior(config, registry=registry, runtime=runtime, progress=not args.no_progress)
    finally:
        runtime.close()
    if runtime.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        print(f"trained prior: {config.out_dir / PRIOR_DIR}" + (f" ({summary})" if summary else ""))
    return 0
