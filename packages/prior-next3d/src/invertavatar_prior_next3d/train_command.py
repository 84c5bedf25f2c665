"""``invertavatar train prior --config FILE``: train the animatable 3D GAN prior (supplement 6.1).

The file (YAML or JSON) holds a :class:`~invertavatar_prior_next3d.training.PriorTrainingConfig`;
``--out`` and ``--steps`` override its ``out_dir`` and ``steps``. Run it under ``torchrun
--nproc-per-node N`` for N processes; a run folder that holds a checkpoint is resumed.
"""

import argparse
from pathlib import Path

from invertavatar_core.config.experiment import default_registry, load_config_data
from invertavatar_core.training.distributed import Runtime

__all__ = ["register", "run"]


def register(train_group: argparse._SubParsersAction) -> None:
    """Add ``prior`` to the ``invertavatar train`` group."""
    parser = train_group.add_parser(
        "prior",
        help="train the animatable 3D GAN prior (next3d) as a 3D-aware GAN",
        description=(
            "Train the animatable 3D GAN prior from a YAML/JSON PriorTrainingConfig. A run folder that holds a "
            "checkpoint is resumed; run under `torchrun --nproc-per-node N` for N processes. The trained G_ema is "
            "exported to <out_dir>/prior (what the encoder stages' training.prior_weights reads)."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML/JSON PriorTrainingConfig")
    parser.add_argument("--out", type=Path, help="run folder (overrides out_dir)")
    parser.add_argument("--steps", type=int, help="training steps (overrides steps)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, train (or resume), print where the exported prior is."""
    # Imported here so that building the command line never imports torch models.
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_core.io.checkpoints import RUN_KIND
    from invertavatar_prior_next3d.training import PRIOR_DIR, PriorTrainingConfig, train_prior

    data = load_config_data(args.config)
    if args.out is not None:
        data["out_dir"] = str(args.out)
    if args.steps is not None:
        data["steps"] = args.steps
    registry = default_registry()
    config = PriorTrainingConfig.model_validate(data, context={"registry": registry})
    # A run folder resumes; any other non-empty folder is refused before any model is built.
    check_output_dir(config.out_dir, RUN_KIND, reuse=True, signature=("config.json", "checkpoints"), what="out_dir")
    runtime = Runtime.from_env(args.device)
    try:
        scalars = train_prior(config, registry=registry, runtime=runtime, progress=not args.no_progress)
    finally:
        runtime.close()
    if runtime.is_main:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        print(f"trained prior: {config.out_dir / PRIOR_DIR}" + (f" ({summary})" if summary else ""))
    return 0
