"""Small deterministic example inputs for conformance tests: cameras and expression UV renders."""

import torch
from torch import Tensor

__all__ = ["example_camera", "example_expression_uv"]


def example_camera(batch: int, radius: float = 2.7) -> Tensor:
    """``(batch, 25)`` EG3D labels of a frontal camera at ``(0, 0, radius)`` looking at the origin.

    OpenCV axes in world coordinates: x right = +x, y down = -y, z forward = -z.
    """
    cam2world = torch.eye(4)
    cam2world[:3, :3] = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    cam2world[:3, 3] = torch.tensor([0.0, 0.0, radius])
    intrinsics = torch.tensor([[4.2647, 0.0, 0.5], [0.0, 4.2647, 0.5], [0.0, 0.0, 1.0]])
    label = torch.cat([cam2world.flatten(), intrinsics.flatten()])
    return label.expand(batch, 25).clone()


def example_expression_uv(batch: int, resolution: int) -> Tensor:
    """``(batch, 3, R, R)``: an elliptical face mask with a closed-mouth UV ramp inside it."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, resolution), torch.linspace(-1, 1, resolution), indexing="ij")
    mask = ((xs / 0.8) ** 2 + (ys / 0.9) ** 2 < 1).float()
    uv = torch.stack([xs * 0.9 * mask, ys * 0.9 * mask, mask])
    return uv.expand(batch, 3, resolution, resolution).clone()
