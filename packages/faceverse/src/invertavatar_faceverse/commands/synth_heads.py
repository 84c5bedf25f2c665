"""``invertavatar synth-heads --out DIR``: procedurally rendered heads in the ``fit`` dataset layout."""

import argparse
import math
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_progress_argument

__all__ = ["register", "run"]


def register(subparsers, groups) -> None:
    """Add the ``synth-heads`` parser."""
    parser = subparsers.add_parser(
        "synth-heads",
        help="render random procedural heads into a dataset folder (the layout 'preprocess' writes)",
        description="Random identities (painted albedo with cheek marks, asymmetric hair, ears), talking-head "
        "sequences (smooth yaw up to --yaw-range, expressions, gaze), one light and background per identity, "
        "rendered with the procedural head and written with cameras, expression UV renders, unwraps, coefficients, "
        "head masks and textures: training and evaluation data that needs no photos and no fitting. "
        "--split heldout draws identities from a seed range training never uses.",
        epilog="examples:\n"
        "  invertavatar synth-heads --out heads/ --identities 8 --frames-per-identity 16 --resolution 64\n"
        "  invertavatar synth-heads --out heldout/ --split heldout --identities 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--identities", type=int, default=4, help="number of identities (sequences)")
    parser.add_argument("--frames-per-identity", type=int, default=8, help="frames per identity")
    parser.add_argument("--resolution", type=int, default=128, help="image size, 64-512 (default 128)")
    parser.add_argument("--uv-resolution", type=int, default=64, help="expression UV render / unwrap size (default 64)")
    parser.add_argument("--split", choices=("train", "heldout"), default="train",
                        help="identity seed range: train (default) or heldout (never seen in training)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="first identity seed within the split (default 0)")
    parser.add_argument("--yaw-range", type=float, default=60.0, help="largest yaw in degrees (default 60)")
    parser.add_argument("--no-details", action="store_true", help="no cheek marks, asymmetric hair or ears")
    parser.add_argument("--tiny", action="store_true", help="use the tiny procedural head (fast, coarse)")
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render and report where."""
    from invertavatar_core.cli import count_noun
    from invertavatar_core.config.experiment import default_registry
    from invertavatar_core.data.datasets import FIT_KIND
    from invertavatar_core.io.atomic import check_output_dir
    from invertavatar_faceverse.synthetic_heads import SyntheticHeadsConfig, synthesize_heads

    check_output_dir(args.out, FIT_KIND, reuse=True, signature=("dataset.json",))  # before any model is built
    registry = default_registry()
    model_config = (
        registry.tiny_config("morphable_model", "procedural")
        if args.tiny
        else registry.default_config("morphable_model", "procedural")
    )
    model = registry.create("morphable_model", model_config)
    rasterizer = registry.create("rasterizer", "torch")
    config = SyntheticHeadsConfig(
        identities=args.identities,
        frames_per_identity=args.frames_per_identity,
        resolution=args.resolution,
        uv_resolution=args.uv_resolution,
        seed=args.seed,
        split=args.split,
        yaw_range=math.radians(args.yaw_range),
        details=not args.no_details,
    )
    out = synthesize_heads(
        args.out,
        config,
        model,
        rasterizer,
        model_config=model_config.model_dump(mode="json"),
        progress=not args.no_progress,
    )
    print(f"wrote {count_noun(config.identities * config.frames_per_identity, f'{config.split} frame')} to {out}")
    return 0
