"""EG3D cameras: 25-number labels, look-at poses, orbits, rays, projection and fitted-pose conversion.

Conventions (docs/design/preprocessing.md, cameras):

- a camera label ``(B, 25)`` is a row-major 4x4 OpenCV cam-to-world matrix (camera x right,
  y down, z forward) followed by a row-major 3x3 intrinsics matrix normalised by the image size
  (FFHQ: focal 4.2647, principal point 0.5). Labels are resolution independent;
- world = EG3D canonical space: y up, the head faces +z, the subject's left is +x;
- image coordinates are continuous pixels: x right, y down, pixel (row i, col j) spans
  ``[j, j + 1) x [i, i + 1)`` so its centre is ``(j + 0.5, i + 0.5)``; this is the centre that
  :func:`rays` uses by default and that the rasteriser's clip convention puts at
  ``x/w = (2j + 1)/W - 1``, so rays, projections and rasterised maps agree pixel for pixel.
"""

import math

import torch
from kornia.geometry.camera.perspective import unproject_points as kornia_unproject

from invertavatar_core.tensor_types import Camera, Float, Tensor

__all__ = [
    "FFHQ_FOCAL",
    "FFHQ_PIVOT",
    "FFHQ_RADIUS",
    "camera_from_mesh_transform",
    "intrinsics_from_fov",
    "look_at_camera",
    "look_at_cam2world",
    "make_camera",
    "orbit_cameras",
    "points_to_clip",
    "project_points",
    "rays",
    "split_camera",
    "world_to_camera",
]

FFHQ_FOCAL = 4.2647
"""Normalised focal length of the FFHQ labels (FOV 18.837 degrees)."""

FFHQ_RADIUS = 2.7
"""Camera distance from the world origin in EG3D's FFHQ convention."""

FFHQ_PIVOT = (0.0, 0.0, 0.2)
"""The point the FFHQ look-at cameras aim at."""

_POLE_EPS = 1e-5
"""Polar angles are kept this far from the poles, where the look-at frame is undefined."""


def intrinsics_from_fov(fov_degrees: float | Tensor) -> Float[Tensor, "... 3 3"]:
    """Normalised intrinsics ``(..., 3, 3)`` for a vertical field of view in degrees.

    EG3D defines ``f = 1 / (tan(fov / 2) * 1.414)`` (principal point 0.5): 18.837 degrees gives
    4.2634, while the FFHQ labels carry the measured :data:`FFHQ_FOCAL` = 4.2647.
    """
    fov = torch.as_tensor(fov_degrees, dtype=torch.float32)
    focal = 1.0 / (torch.tan(torch.deg2rad(fov) / 2) * 1.414)  # EG3D's FOV_to_intrinsics constant
    k = torch.zeros(*fov.shape, 3, 3, device=fov.device)
    k[..., 0, 0] = focal
    k[..., 1, 1] = focal
    k[..., 0, 2] = 0.5
    k[..., 1, 2] = 0.5
    k[..., 2, 2] = 1.0
    return k


def _ffhq_intrinsics(focal: float = FFHQ_FOCAL) -> Float[Tensor, "3 3"]:
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])


def make_camera(cam2world: Float[Tensor, "B 4 4"], intrinsics: Float[Tensor, "... 3 3"] | None = None) -> Camera:
    """EG3D label ``(B, 25)`` from cam-to-world ``(B, 4, 4)`` and normalised intrinsics ``(B|, 3, 3)``."""
    if cam2world.ndim != 3 or cam2world.shape[-2:] != (4, 4):
        raise ValueError(f"cam2world: expected (B, 4, 4), got shape {tuple(cam2world.shape)}")
    if intrinsics is None:
        intrinsics = _ffhq_intrinsics()
    if intrinsics.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics: expected (B, 3, 3) or (3, 3), got shape {tuple(intrinsics.shape)}")
    k = intrinsics.to(cam2world).expand(cam2world.shape[0], 3, 3)
    return torch.cat([cam2world.reshape(-1, 16), k.reshape(-1, 9)], 1)


def split_camera(camera: Camera) -> tuple[Float[Tensor, "B 4 4"], Float[Tensor, "B 3 3"]]:
    """Inverse of :func:`make_camera`: ``(B, 25)`` -> cam-to-world ``(B, 4, 4)``, intrinsics ``(B, 3, 3)``."""
    if camera.ndim != 2 or camera.shape[1] != 25:
        raise ValueError(f"camera: expected EG3D labels (B, 25), got shape {tuple(camera.shape)}")
    return camera[:, :16].reshape(-1, 4, 4), camera[:, 16:].reshape(-1, 3, 3)


def look_at_cam2world(
    horizontal: Float[Tensor, " B"],
    vertical: Float[Tensor, " B"],
    radius: float = FFHQ_RADIUS,
    pivot: tuple[float, float, float] = FFHQ_PIVOT,
) -> Float[Tensor, "B 4 4"]:
    """OpenCV cam-to-world ``(B, 4, 4)`` of cameras on a sphere aiming at ``pivot`` (EG3D look-at).

    ``horizontal`` and ``vertical`` are EG3D's absolute angles in radians: ``(pi/2, pi/2)`` is the
    frontal camera at ``(0, 0, radius)``; a larger horizontal angle moves the camera towards +x,
    a larger vertical angle moves it down. As in EG3D, the vertical angle ``v`` maps to the polar
    angle ``arccos(1 - 2 v / pi)`` (uniform on the sphere) and the sphere is centred on the world
    origin, not on the pivot. The camera's y axis points down (world up is +y).
    """
    horizontal = torch.as_tensor(horizontal, dtype=torch.float32).reshape(-1)
    vertical = torch.as_tensor(vertical, dtype=torch.float32).reshape(-1)
    v = vertical.clamp(_POLE_EPS, math.pi - _POLE_EPS)
    polar = torch.arccos((1 - 2 * v / math.pi).clamp(-1 + _POLE_EPS, 1 - _POLE_EPS))
    azimuth = math.pi - horizontal
    origin = radius * torch.stack(
        [torch.sin(polar) * torch.cos(azimuth), torch.cos(polar), torch.sin(polar) * torch.sin(azimuth)], -1
    )
    forward = torch.nn.functional.normalize(origin.new_tensor(pivot) - origin, dim=-1)
    world_up = origin.new_tensor([0.0, 1.0, 0.0]).expand_as(forward)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, world_up, dim=-1), dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    cam2world = torch.eye(4, device=origin.device).repeat(len(origin), 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, down, forward], -1)
    cam2world[:, :3, 3] = origin
    return cam2world


def look_at_camera(
    yaw: Float[Tensor, " B"] | float = 0.0,
    pitch: Float[Tensor, " B"] | float = 0.0,
    *,
    radius: float = FFHQ_RADIUS,
    pivot: tuple[float, float, float] = FFHQ_PIVOT,
    focal: float = FFHQ_FOCAL,
) -> Camera:
    """EG3D labels ``(B, 25)`` of look-at cameras at ``yaw``, ``pitch`` radians *around the frontal view*.

    ``yaw = pitch = 0`` is ``LookAtPoseSampler(pi/2, pi/2)``, the FFHQ conditioning pose;
    positive yaw moves the camera towards +x (the subject's left), positive pitch moves it down.
    """
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1)
    yaw, pitch = torch.broadcast_tensors(yaw, pitch)
    cam2world = look_at_cam2world(math.pi / 2 + yaw, math.pi / 2 + pitch, radius, pivot)
    return make_camera(cam2world, _ffhq_intrinsics(focal).to(cam2world.device))


def orbit_cameras(
    frames: int,
    yaw_range: float = 0.35,  # the released one-shot demo's orbit, docs/design/preprocessing.md
    pitch_range: float = 0.25,  # same orbit
    pitch_offset: float = -0.05,  # same orbit
    **look_at: float,
) -> Camera:
    """``(frames, 25)`` look-at cameras on a closed elliptical yaw/pitch orbit for novel-view videos.

    Frame ``t`` sits at yaw ``yaw_range * sin(phase)`` and pitch
    ``pitch_offset + pitch_range * cos(phase)`` with ``phase = 2 pi t / frames``;
    ``look_at`` goes to :func:`look_at_camera` (radius, pivot, focal).
    """
    phase = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    yaw = (yaw_range * torch.sin(phase)).float()
    pitch = (pitch_offset + pitch_range * torch.cos(phase)).float()
    return look_at_camera(yaw, pitch, **look_at)


def _pixel_intrinsics(intrinsics: Tensor, resolution: int) -> Tensor:
    """Normalised ``(B, 3, 3)`` intrinsics -> pixel units of a square image of ``resolution``."""
    scale = intrinsics.new_tensor([resolution, resolution, 1.0])[:, None]
    return intrinsics * scale


def rays(
    camera: Camera, resolution: int, pixel_offset: float = 0.5
) -> tuple[Float[Tensor, "B R2 3"], Float[Tensor, "B R2 3"]]:
    """World-space ray origins and unit directions ``(B, R*R, 3)``, row-major over pixels.

    The ray of pixel (row i, col j), index ``i * R + j``, passes through image point
    ``(j + pixel_offset, i + pixel_offset)`` of the intrinsics multiplied by the resolution.
    The default 0.5 goes through pixel centres (EG3D's own sampler, and the convention of
    :func:`project_points` and the rasteriser); InvertAvatar's ``RaySampler_zxc`` used 0
    (docs/design/prior.md), which shifts renders by half a pixel.
    """
    cam2world, intrinsics = split_camera(camera)
    b = camera.shape[0]
    coords = torch.arange(resolution, device=camera.device, dtype=camera.dtype) + pixel_offset
    i, j = torch.meshgrid(coords, coords, indexing="ij")
    pixels = torch.stack([j, i], -1).reshape(1, -1, 2).expand(b, -1, -1)
    k = _pixel_intrinsics(intrinsics, resolution)[:, None]
    depth = torch.ones_like(pixels[..., :1])
    direction_cam = kornia_unproject(pixels, depth, k.expand(b, pixels.shape[1], 3, 3))
    directions = torch.nn.functional.normalize(direction_cam @ cam2world[:, :3, :3].transpose(1, 2), dim=-1)
    origins = cam2world[:, None, :3, 3].expand_as(directions)
    return origins, directions


def world_to_camera(points: Float[Tensor, "B N 3"], camera: Camera) -> Float[Tensor, "B N 3"]:
    """World points ``(B, N, 3)`` -> OpenCV camera coordinates ``(B, N, 3)`` (z = depth along the axis)."""
    cam2world, _ = split_camera(camera)
    world2cam = torch.linalg.inv(cam2world)
    # Rotate and translate directly: a homogeneous bmm costs the landmark fit's backward pass a
    # copy per point of every intermediate (benchmarks/preprocess.py).
    return points @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]


def project_points(
    points: Float[Tensor, "B N 3"], camera: Camera, resolution: int
) -> tuple[Float[Tensor, "B N 2"], Float[Tensor, "B N"]]:
    """World points ``(B, N, 3)`` -> continuous pixel coordinates ``(B, N, 2)`` (x, y) and depth ``(B, N)``.

    Pixel (row i, col j) has its centre at ``(j + 0.5, i + 0.5)``; depth is camera-space z.
    """
    cam = world_to_camera(points, camera)
    _, intrinsics = split_camera(camera)
    k = _pixel_intrinsics(intrinsics, resolution)
    depth = cam[..., 2:]
    # A point in the camera plane (z = 0) keeps its x, y instead of becoming inf (the perspective
    # divide every stored reference output was computed with: 1 / (z + 1e-8) elsewhere).
    scale = torch.where(depth.abs() > 1e-8, 1.0 / (depth + 1e-8), torch.ones_like(depth))
    focal = torch.stack([k[:, 0, 0], k[:, 1, 1]], -1)[:, None]
    centre = torch.stack([k[:, 0, 2], k[:, 1, 2]], -1)[:, None]
    return cam[..., :2] * scale * focal + centre, cam[..., 2]


def points_to_clip(points: Float[Tensor, "B N 3"], camera: Camera, near: float = 0.01) -> Float[Tensor, "B N 4"]:
    """World points ``(B, N, 3)`` -> rasteriser clip space ``(B, N, 4)`` for a square image of any size.

    ``x/w, y/w`` follow the rasteriser's pixel convention (-1 and +1 at the image borders,
    +y down), ``w`` is camera depth and ``z/w = 1 - near / depth`` grows with depth.
    """
    cam = world_to_camera(points, camera)
    _, intrinsics = split_camera(camera)
    depth = cam[..., 2:]
    # Normalised image coordinates u = (K p)_x / z lie in [0, 1]; clip x = (2u - 1) z.
    image = cam @ intrinsics.transpose(1, 2)
    return torch.cat([2 * image[..., :2] - depth, depth - near, depth], -1)


def camera_from_mesh_transform(
    mesh_to_camera: Float[Tensor, "B 4 4"],
    to_canonical: Float[Tensor, "4 4"],
    intrinsics: Float[Tensor, "... 3 3"] | None = None,
) -> Camera:
    """EG3D labels ``(B, 25)`` of a fitted pose: cam-to-world = ``to_canonical @ mesh_to_camera^-1``.

    ``mesh_to_camera`` maps model-space points to OpenCV camera space (the fitted similarity,
    pose and scale); ``to_canonical`` is the morphable model's placement in tri-plane space (the
    ``N F`` of docs/design/preprocessing.md). Any uniform scale left in the product is divided out of the rotation:
    it changes neither the projection nor the ray directions, and EG3D labels are rigid. The
    canonical mesh then projects through the label exactly where the fitted mesh projected.
    """
    if mesh_to_camera.ndim != 3 or mesh_to_camera.shape[-2:] != (4, 4):
        raise ValueError(f"mesh_to_camera: expected (B, 4, 4), got shape {tuple(mesh_to_camera.shape)}")
    if to_canonical.shape != (4, 4):
        raise ValueError(f"to_canonical: expected (4, 4), got shape {tuple(to_canonical.shape)}")
    cam2world = to_canonical.to(mesh_to_camera) @ torch.linalg.inv(mesh_to_camera)
    scale = torch.linalg.det(cam2world[:, :3, :3]).abs().pow(1.0 / 3.0)
    if not bool((scale > 0).all()):
        raise ValueError("mesh_to_camera: the fitted transform is singular (zero scale)")
    rigid = cam2world.clone()
    rigid[:, :3, :3] = cam2world[:, :3, :3] / scale[:, None, None]
    rigid[:, 3] = rigid.new_tensor([0.0, 0.0, 0.0, 1.0])
    return make_camera(rigid, intrinsics)
