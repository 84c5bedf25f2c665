"""``invertavatar sample --prior RUN/prior --out DIR``: look at what a trained prior draws.

Writes three PNG grids into ``--out``:

- ``identities.png``: ``--identities`` random latents (``z ~ N(0, I)``, truncated by
  ``--truncation``), frontal, neutral expression; with ``--latents`` (the
  ``latents.safetensors`` of a supervised run) its first rows are trained identities instead;
- ``expression.png``: each identity with ``jaw_open`` from 0 to 1 (expression UV renders of the
  procedural head's mean shape);
- ``yaw.png``: each identity at yaws from ``-yaw`` to ``+yaw`` radians (``--yaw``, default 0.6).

The mapping network is conditioned on the frontal camera.
"""

import argparse
from pathlib import Path

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument

__all__ = ["SAMPLES_KIND", "register", "run"]

SAMPLES_KIND = "samples"
"""Marker kind (:data:`invertavatar_core.io.atomic.MARKER_FILE`) of a folder ``sample`` wrote and may rewrite."""


def register(subparsers: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``sample`` command (``groups``: the hook's command groups, unused)."""
    parser = subparsers.add_parser(
        "sample",
        help="draw random identities, an expression sweep and a yaw sweep from a trained prior",
        description=(
            "Write identities.png (random or trained identities, frontal), expression.png (jaw_open 0 -> 1) "
            "and yaw.png (a yaw sweep) from a trained prior, to look at what it draws."
        ),
        epilog="examples:\n  invertavatar sample --prior runs/prior/prior --out runs/prior/samples\n"
        "  invertavatar sample --prior runs/prior/prior --latents runs/prior/latents.safetensors --out samples",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prior", type=Path, required=True, help="prior component folder (a run's prior/)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the PNG grids")
    parser.add_argument("--latents", type=Path, help="latents.safetensors of a supervised run (trained identities)")
    parser.add_argument("--identities", type=int, default=6, help="identities (rows), default 6")
    parser.add_argument("--columns", type=int, default=7, help="steps of each sweep (columns), default 7")
    parser.add_argument("--yaw", type=float, default=0.6, help="largest yaw of the sweep in radians (default 0.6)")
    parser.add_argument("--truncation", type=float, default=0.7, help="truncation psi of random latents")
    parser.add_argument("--model", choices=("tiny", "default"), default="tiny",
                        help="procedural head size for the expression renders (tiny: the tiny preset's)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random latents")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the prior, draw, write the grids."""
    import torch
    from tqdm import tqdm

    from invertavatar_core.config.compute import resolve_device
    from invertavatar_core.config.experiment import default_registry
    from invertavatar_core.errors import UserError
    from invertavatar_core.geometry.cameras import look_at_camera
    from invertavatar_core.geometry.uv_maps import render_expression_uv
    from invertavatar_core.inversion.pipeline import repeat_features
    from invertavatar_core.io.atomic import check_output_dir, write_marker
    from invertavatar_core.io.checkpoints import load_component, load_tensors
    from invertavatar_core.io.media import save_grid
    from invertavatar_prior_next3d.supervised import render_yaw_sweep

    if args.identities < 1 or args.columns < 2:
        raise UserError(f"--identities must be >= 1 and --columns >= 2, got {args.identities}, {args.columns}")
    device = resolve_device(args.device)  # a one-line error before the folder is claimed
    # Only a new or empty folder, or an earlier `sample` output, before the prior is loaded.
    out = check_output_dir(args.out, SAMPLES_KIND, reuse=True)
    if not (args.prior / "config.json").is_file():
        raise UserError(f"--prior {args.prior}: not a component folder (no config.json); pass a run's prior/")
    registry = default_registry()
    prior, _ = load_component(args.prior, registry, "prior")
    prior.to(device).eval()
    info = prior.info
    condition = look_at_camera(0.0, 0.0).to(device)
    z = torch.randn(args.identities, info.z_dim, generator=torch.Generator().manual_seed(args.seed))
    psi = torch.full((args.identities, 1, 1), args.truncation)
    if args.latents is not None:
        tensors, _ = load_tensors(args.latents)
        if "latents" not in tensors or tensors["latents"].shape[-1] != info.z_dim:
            raise UserError(f"--latents {args.latents}: expected a 'latents' tensor (N, {info.z_dim})")
        known = tensors["latents"][: args.identities]
        z[: len(known)] = known
        psi[: len(known)] = 1.0  # trained identities are shown as they are
    z, psi = z.to(device), psi.to(device)
    with torch.no_grad():
        ws_plain = prior.mapping(z, condition.expand(len(z), -1))
        ws = prior.w_avg + psi * (ws_plain - prior.w_avg)

        config = registry.tiny_config if args.model == "tiny" else registry.default_config
        model = registry.create("morphable_model", config("morphable_model", "procedural")).to(device)
        rasterizer = registry.create("rasterizer", "torch")
        if "jaw_open" not in model.expression_names:
            raise UserError(f"the {args.model} procedural head has no jaw_open blendshape")
        opening = torch.linspace(0, 1, args.columns, device=device)
        expression = torch.zeros(args.columns, model.n_expression, device=device)
        expression[:, model.expression_names.index("jaw_open")] = opening
        identity = torch.zeros(args.columns, model.n_identity, device=device)
        eyes = torch.zeros(args.columns, model.n_eye, device=device) if model.n_eye else None
        expression_uv = render_expression_uv(model, rasterizer, identity, expression, eyes, info.uv_resolution)

        bar = tqdm(total=3, desc="sampling", unit="grid", disable=args.no_progress)
        features = prior.canonical(ws)
        n = args.identities
        frontal = prior.render(features, expression_uv[:1].expand(n, -1, -1, -1), condition.expand(n, -1)).image
        bar.update(1)
        cameras = condition.expand(n * args.columns, -1)
        sweep = prior.render(repeat_features(features, args.columns), expression_uv.repeat(n, 1, 1, 1), cameras).image
        bar.update(1)
        yaws = tuple(torch.linspace(-args.yaw, args.yaw, args.columns).tolist())
        turned = render_yaw_sweep(prior, ws, expression_uv[:1], yaws)
        bar.update(1)
        bar.close()
    write_marker(out, SAMPLES_KIND)
    save_grid(frontal.clamp(-1, 1).cpu(), out / "identities.png", nrow=n)
    save_grid(sweep.clamp(-1, 1).cpu(), out / "expression.png", nrow=args.columns)
    save_grid(turned.clamp(-1, 1).cpu(), out / "yaw.png", nrow=args.columns)
    print(f"wrote {out}/identities.png, expression.png (jaw_open 0 -> 1), yaw.png (+-{args.yaw} rad)")
    return 0
