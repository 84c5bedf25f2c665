"""Rasteriser speed: ms per frame for every installed backend, 256^2 and 512^2, CPU and CUDA.

The mesh is a 50k-triangle UV sphere seen by the frontal FFHQ camera (it fills about half the
frame, front and back faces overlap, like a head). Per backend, device and resolution it times
``rasterize`` (coverage, depth, perspective-correct barycentrics) and ``rasterize`` plus
``interpolate`` of a 3-channel attribute (median and best of ``--repeats`` after ``--warmup``);
CPU runs use ``--threads`` threads (default 2, the target of issue 3: <= 60 ms at 512^2), CUDA
runs synchronise around each call (target <= 1 ms on an H100). The ``ratio`` column is the time
over the torch backend's on the same device and resolution (same run). Prints a table and
writes JSON (``--out``, default ``benchmarks/rasterizer.json`` next to this script). Usage::

    python benchmarks/rasterizer.py
    python benchmarks/rasterizer.py --threads 1 --repeats 30
"""

import argparse
import functools
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from invertavatar_core.evaluation.tables import format_table
from invertavatar_core.geometry.cameras import look_at_camera, points_to_clip
from invertavatar_core.io.atomic import atomic_write_text
from invertavatar_core.plugin.manager import get_plugin_manager
from invertavatar_core.plugin.protocols import Rasterizer
from invertavatar_core.plugin.registry import build_registry


def uv_sphere(n_lat: int, n_lon: int, radius: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed UV sphere: ``(N, 3)`` vertices and ``(2 * n_lon * (n_lat - 1), 3)`` faces."""
    theta = torch.linspace(0, math.pi, n_lat + 1)[1:-1]
    phi = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    vertices = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring, torch.tensor([[0.0, -1.0, 0.0]])]) * radius
    i = torch.arange(n_lat - 2)[:, None]
    j = torch.arange(n_lon)[None]
    a, b = 1 + i * n_lon + j, 1 + i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    quads = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    top = torch.stack(
        [torch.zeros(n_lon, dtype=torch.long), 1 + (torch.arange(n_lon) + 1) % n_lon, 1 + torch.arange(n_lon)], -1
    )
    last = len(vertices) - 1
    ring0 = 1 + (n_lat - 2) * n_lon
    bottom = torch.stack(
        [torch.full((n_lon,), last), ring0 + torch.arange(n_lon), ring0 + (torch.arange(n_lon) + 1) % n_lon], -1
    )
    return vertices, torch.cat([top, quads, bottom])


def render(rasterizer: Rasterizer, clip: torch.Tensor, faces: torch.Tensor, res: int, attributes: torch.Tensor | None):
    """Rasterise one frame, and interpolate ``attributes`` when given."""
    fragments = rasterizer.rasterize(clip, faces, res, res)
    return fragments if attributes is None else rasterizer.interpolate(attributes, fragments, faces)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median and best wall time of ``fn`` in milliseconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--triangles", type=int, default=50_000, help="approximate triangle count of the sphere")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("rasterizer.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n_lon = max(8, round(math.sqrt(args.triangles)))
    n_lat = max(4, round(args.triangles / (2 * n_lon)) + 1)
    vertices, faces = uv_sphere(n_lat, n_lon)
    clip = points_to_clip(vertices[None], look_at_camera(0.0, 0.0))
    attributes = torch.cat([vertices, torch.ones(len(vertices), 1)], -1)[None, :, :3]
    registry = build_registry(get_plugin_manager())
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        v, f, attr = clip.to(device), faces.to(device), attributes.to(device)
        for backend in registry.names("rasterizer"):
            rasterizer = registry.create("rasterizer", backend)
            for res in args.resolutions:
                try:
                    frags = rasterizer.rasterize(v, f, res, res)
                except (ValueError, RuntimeError) as exc:  # e.g. a CUDA-only backend on CPU
                    print(f"skip {backend} on {device_name}: {exc}")
                    break
                median, best = time_ms(
                    functools.partial(render, rasterizer, v, f, res, None), device, args.warmup, args.repeats
                )
                both, _ = time_ms(
                    functools.partial(render, rasterizer, v, f, res, attr), device, args.warmup, args.repeats
                )
                rows.append(
                    {
                        "backend": backend,
                        "device": device_name,
                        "resolution": res,
                        "triangles": len(faces),
                        "threads": args.threads if device.type == "cpu" else None,
                        "covered": round(float(frags.mask.float().mean()), 3),
                        "rasterize_ms": median,
                        "best_ms": best,
                        "with_interpolate_ms": both,
                    }
                )
    for row in rows:
        base = next(
            r
            for r in rows
            if r["backend"] == "torch" and r["device"] == row["device"] and r["resolution"] == row["resolution"]
        )
        row["ratio"] = row["rasterize_ms"] / base["rasterize_ms"]

    print(format_table(rows))
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
