"""Camera helpers shared by the animation tests: turn an EG3D camera about +y, read its azimuth back."""

import math

import torch

from invertavatar_core.geometry.cameras import make_camera, split_camera


def yaw_turn(camera: torch.Tensor, angle: float) -> torch.Tensor:
    """``camera (B, 25)`` moved by a world rotation of ``angle`` about +y (the head turning the other way)."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.eye(4)
    rotation[0, 0], rotation[0, 2], rotation[2, 0], rotation[2, 2] = c, s, -s, c
    cam2world, intrinsics = split_camera(camera)
    return make_camera(rotation @ cam2world, intrinsics[0])


def azimuth(camera: torch.Tensor) -> torch.Tensor:
    """``(B,)`` angle of the camera position about +y, 0 in front of the face (the look-at yaw)."""
    position = split_camera(camera)[0][:, :3, 3]
    return torch.atan2(position[:, 0], position[:, 2])
