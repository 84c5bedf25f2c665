"""``invertavatar convert release-prior PKL --out DIR`` (docs/release-weights.md).

Reads the authors' released GAN snapshot (``ani3dgan512.pkl``) with the restricted unpickler
(nothing embedded in it runs), converts ``G_ema`` with the release settings and writes a ``next3d``
prior component (``config.json`` + ``model.safetensors``) plus ``conversion.json``. Given an EG3D
snapshot instead, it writes a prior initialised from it for ``invertavatar train prior``
(``init_prior``).
"""

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``release-prior`` to the ``invertavatar convert`` group."""
    parser = groups["convert"].add_parser(
        "release-prior",
        help="the authors' ani3dgan512.pkl -> a next3d prior checkpoint",
        description=(
            "Convert the released animatable GAN. Nothing in the pickle is executed; the output is a prior "
            "component (config.json + model.safetensors) computing what the release computes. An EG3D "
            "snapshot instead initialises G_static, the decoder and SR of a new prior (for 'train prior', "
            "init_prior). See docs/release-weights.md."
        ),
        epilog="examples:\n  invertavatar convert release-prior ani3dgan512.pkl --out release/prior\n"
        "  invertavatar convert release-prior FSInvertAvatar.pkl --key G.generator --out release/prior-fewshot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pkl", type=Path, help="ani3dgan512.pkl (downloaded by you; non-commercial licence)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for the prior checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is a prior written earlier")
    parser.add_argument(
        "--key",
        default="G_ema",
        help="generator to convert (default G_ema, the one the authors render with; G.generator in a few-shot pickle)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the parts an EG3D pickle lacks (G_tex, G_face); default 0"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print where the checkpoint went and every tensor left out."""
    from invertavatar_prior_next3d.release.prior import CONVERSION_REPORT, convert_release_prior

    conversion = convert_release_prior(args.pkl, args.out, key=args.key, seed=args.seed, overwrite=args.overwrite)
    if conversion.random:
        print(f"wrote {args.out} (next3d prior initialised from the EG3D generator {args.pkl}:{args.key})")
    else:
        print(f"wrote {args.out} (next3d prior with the release settings, from {args.pkl}:{args.key})")
    print(conversion.report())
    print(f"every tensor and reason: {args.out / CONVERSION_REPORT}")
    return 0
