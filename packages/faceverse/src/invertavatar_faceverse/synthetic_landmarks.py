"""Landmarks as a detector would report them on a rendered head with known coefficients and pose.

The exact ground truth for testing the fit: the model's 478 landmarks projected through a known
camera. A detector, however, cannot see the landmarks the head hides from the camera (the far
cheek, eye and brow of a turned head) and still reports them; like MediaPipe and 2D landmark
detectors, :func:`detector_landmarks` puts each hidden one on the visible outline of the head in
its image row, on the side the head is turned away to. Gaussian pixel noise can be added.
"""

import torch
from torch import Tensor

from invertavatar_core.geometry.cameras import project_points
from invertavatar_core.tensor_types import Bool, Float
from invertavatar_faceverse.fitting import model_landmarks

__all__ = ["detector_landmarks", "hidden_landmarks"]


def hidden_landmarks(
    model,
    rasterizer,
    identity: Float[Tensor, "T S"],
    expression: Float[Tensor, "T E"],
    eyes: Float[Tensor, "T n_eye"] | None,
    camera: Float[Tensor, "T 25"],
    resolution: int = 256,
    tolerance: float = 0.012,
) -> tuple[Bool[Tensor, "T L"], Bool[Tensor, "T R R"]]:
    """``(T, 478)`` True where the mesh hides a landmark from the camera, and the ``(T, R, R)`` head mask.

    A depth test against the rasterised mesh at ``resolution``; ``tolerance`` is the depth (canonical
    units, about 0.5 cm) by which a surface must lie in front of a landmark to hide it.
    """
    from invertavatar_core.geometry.uv_maps import canonical_vertices, posed_fragments, surface_depth

    with torch.no_grad():
        verts = canonical_vertices(model, identity, expression, eyes)
        fragments = posed_fragments(rasterizer, verts, model.faces, camera, resolution)
        points = model_landmarks(model, identity, expression, eyes)
        pixels, depth = project_points(points, camera, resolution)
        ij = pixels.floor().long().clamp(0, resolution - 1)
        batch = torch.arange(len(points), device=points.device)[:, None]
        front_depth = surface_depth(fragments)[batch, ij[..., 1], ij[..., 0]]
    return depth > front_depth + tolerance, fragments.mask


def detector_landmarks(
    model,
    rasterizer,
    identity: Float[Tensor, "T S"],
    expression: Float[Tensor, "T E"],
    eyes: Float[Tensor, "T n_eye"] | None,
    camera: Float[Tensor, "T 25"],
    image_size: int = 512,
    *,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    resolution: int = 256,
) -> Float[Tensor, "T L 2"]:
    """``(T, 478, 2)`` pixel landmarks of the model at known coefficients and cameras, hidden ones on the outline.

    Args:
        model: the morphable model (with MediaPipe landmark correspondences).
        rasterizer: a Rasterizer for the depth test.
        identity: identity coefficients per frame.
        expression: expression weights per frame.
        eyes: eye angles per frame, or None.
        camera: EG3D labels per frame.
        image_size: square image size of the returned pixels.
        noise: standard deviation of the Gaussian noise added to every coordinate, pixels.
        generator: random source of the noise.
        resolution: rasterisation size of the depth test and the outline.
    """
    with torch.no_grad():
        points = model_landmarks(model, identity, expression, eyes)
        pixels, _ = project_points(points, camera, image_size)
        hidden, mask = hidden_landmarks(model, rasterizer, identity, expression, eyes, camera, resolution)
        scale = resolution / image_size
        out = pixels.clone()
        for b in range(len(pixels)):
            # The side the head turns away to: where the nose tip lies relative to the face's centre.
            away = float(pixels[b, 1, 0] - pixels[b, :, 0].mean()) >= 0
            for i in torch.nonzero(hidden[b]).flatten().tolist():
                row = int((pixels[b, i, 1] * scale).clamp(0, resolution - 1))
                cols = torch.nonzero(mask[b, row]).flatten()
                if len(cols):
                    edge = cols.max() + 1 if away else cols.min()
                    out[b, i, 0] = edge.to(out.dtype) / scale
        if noise > 0:
            out = out + noise * torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
    return out
