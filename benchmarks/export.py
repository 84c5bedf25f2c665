"""Mesh export speed and size: ``extract_mesh`` of one avatar at several grid resolutions.

Builds the next3d prior at ``--preset`` (random weights, or ``--prior DIR``: a prior component
directory such as ``runs/prior-supervised/prior``), one avatar from a fixed z (truncation 0.7)
and the neutral expression of the preset's morphable model, then times ``extract_mesh`` (field
sampling, marching cubes, largest component, vertex colours) per resolution, after one warm-up
run at the smallest. Random weights give a nearly constant density that the renderer never
draws opaque, so without ``--prior`` the threshold is the median density on a 32^3 grid (a
surface exists; its shape means nothing); with ``--prior`` it is the default (the level whose
silhouettes match the rendered ones along the grid axes). With ``--silhouette`` it also compares
each mesh's silhouette with the renderer's (opacity > 0.5) from three perspective views (IoU),
at the threshold used and at each of ``--thresholds``. Prints a table and writes JSON (``--out``,
default ``benchmarks/export.json`` beside this script). Usage::

    python benchmarks/export.py
    python benchmarks/export.py --prior runs/prior-supervised/prior --resolutions 128 256 --silhouette
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.geometry.avatar_mesh import extract_mesh, sample_density
from invertavatar_core.geometry.cameras import look_at_camera, points_to_clip
from invertavatar_core.geometry.uv_maps import render_expression_uv
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.io.checkpoints import load_component


def _silhouette_iou(prior, features, uv, mesh, rasterizer, size: int = 96) -> float:
    """Mean IoU of the mesh's silhouette and the renderer's opacity > 0.5 from three views."""
    cameras = look_at_camera(torch.tensor([0.0, 0.8, 0.0]), torch.tensor([0.0, 0.0, -0.4]))
    with torch.no_grad():
        planes = prior.animate(features, uv).expand(3, -1, -1, -1, -1)
        rendered = prior.renderer(planes, cameras, size).opacity[:, 0] > 0.5
    clip = points_to_clip(mesh.vertices[None].expand(3, -1, -1), cameras)
    covered = rasterizer.rasterize(clip, mesh.faces, size, size).mask
    union = (covered | rendered).sum((1, 2)).clamp_min(1)
    return float(((covered & rendered).sum((1, 2)) / union).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--prior", help="prior component directory (trained weights)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--silhouette", action="store_true", help="IoU of mesh and rendered silhouettes")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[], help="more thresholds for --silhouette")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(Path(__file__).with_name("export.json")))
    args = parser.parse_args()

    registry = default_registry()
    experiment = preset_experiment(registry, args.preset)
    if args.prior:
        prior, _ = load_component(args.prior, registry, "prior")
    else:
        prior = registry.create("prior", experiment.prior)
    prior = prior.to(args.device).eval()
    model = registry.create("morphable_model", experiment.morphable_model)
    rasterizer = registry.create("rasterizer", experiment.rasterizer)
    with torch.no_grad():
        z = torch.randn(1, prior.info.z_dim, generator=torch.Generator().manual_seed(5)).to(args.device)
        features = prior.canonical(prior.mapping(z, torch.zeros(1, 25, device=args.device), 0.7))
    eyes = torch.zeros(1, model.n_eye) if model.n_eye else None
    uv = render_expression_uv(
        model,
        rasterizer,
        torch.zeros(1, model.n_identity),
        torch.zeros(1, model.n_expression),
        eyes,
        resolution=prior.info.uv_resolution,
    ).to(args.device)
    threshold = None  # trained: the default, matched to the rendered silhouettes
    if not args.prior:
        with torch.no_grad():
            threshold = float(sample_density(prior, prior.animate(features, uv), 32).median())

    extract_mesh(prior, features, uv, resolution=min(args.resolutions), threshold=threshold)  # warm-up
    rows, results = [], []
    for resolution in args.resolutions:
        began = time.perf_counter()
        mesh = extract_mesh(prior, features, uv, resolution=resolution, threshold=threshold)
        seconds = time.perf_counter() - began
        entry = {
            "resolution": resolution,
            "threshold": mesh.threshold,
            "seconds": seconds,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
        }
        if args.silhouette:
            entry["silhouette_iou"] = _silhouette_iou(prior, features, uv, mesh, rasterizer)
            entry["silhouette_iou_at"] = {}
            for level in args.thresholds:
                other = extract_mesh(prior, features, uv, resolution=resolution, threshold=level)
                entry["silhouette_iou_at"][str(level)] = _silhouette_iou(prior, features, uv, other, rasterizer)
        results.append(entry)
        row = {
            "grid": resolution,
            "threshold": f"{mesh.threshold:.3g}",
            "seconds": f"{seconds:.2f}",
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
        }
        if args.silhouette:
            row["iou"] = f"{entry['silhouette_iou']:.3f}"
            row.update({f"iou@{k}": f"{v:.3f}" for k, v in entry["silhouette_iou_at"].items()})
        rows.append(row)
    print(
        f"mesh export, preset {args.preset}, {'trained prior ' + args.prior if args.prior else 'random weights'}, "
        f"{args.device}, {torch.get_num_threads()} thread(s)"
    )
    print(format_table(rows))
    meta = {
        "preset": args.preset,
        "prior": args.prior,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    atomic_write_text(args.out, json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
