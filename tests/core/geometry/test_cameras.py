"""EG3D camera labels, look-at poses, rays, projection and fitted-pose conversion."""

import math

import pytest
import torch

from invertavatar_core.geometry.cameras import (
    FFHQ_FOCAL,
    FFHQ_PIVOT,
    FFHQ_RADIUS,
    camera_from_mesh_transform,
    intrinsics_from_fov,
    look_at_camera,
    make_camera,
    orbit_cameras,
    points_to_clip,
    project_points,
    rays,
    split_camera,
    world_to_camera,
)


def random_rotation(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    return q * torch.sign(torch.linalg.det(q))[:, None, None]  # proper rotations


def test_label_round_trip_and_rigid_look_at():
    g = torch.Generator().manual_seed(0)
    cam2world = torch.eye(4).repeat(3, 1, 1)
    cam2world[:, :3, :3] = random_rotation(3, g)
    cam2world[:, :3, 3] = torch.randn(3, 3, generator=g)
    k = intrinsics_from_fov(torch.tensor([12.0, 18.837, 30.0]))
    label = make_camera(cam2world, k)
    assert label.shape == (3, 25)
    c2w, k2 = split_camera(label)
    assert torch.equal(c2w, cam2world) and torch.equal(k2, k)
    assert torch.equal(label[:, 16:], k.reshape(3, 9))  # row-major, as EG3D flattens
    cams = look_at_camera(torch.linspace(-0.5, 0.5, 5), torch.linspace(0.3, -0.3, 5))
    rot = split_camera(cams)[0][:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(5, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(5))
    with pytest.raises((ValueError, TypeError), match="camera"):
        split_camera(torch.zeros(2, 16))


def test_ffhq_intrinsics():
    k = intrinsics_from_fov(18.837)
    assert abs(float(k[0, 0]) - FFHQ_FOCAL) < 2e-3  # the labels carry 4.2647, the formula gives 4.2634
    assert float(k[0, 2]) == 0.5 and float(k[1, 2]) == 0.5 and float(k[2, 2]) == 1.0
    label = look_at_camera()
    assert label[0, 16] == pytest.approx(FFHQ_FOCAL) and label[0, 20] == pytest.approx(FFHQ_FOCAL)


def test_frontal_look_at_sees_the_pivot_at_the_centre():
    camera = look_at_camera(0.0, 0.0)
    cam2world, _ = split_camera(camera)
    torch.testing.assert_close(cam2world[0, :3, 3], torch.tensor([0.0, 0.0, FFHQ_RADIUS]), atol=1e-5, rtol=0)
    # Camera axes: x right = world +x, y down = world -y, z forward = world -z.
    torch.testing.assert_close(cam2world[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-5, rtol=0)
    pivot = torch.tensor([[FFHQ_PIVOT]])
    pixel, depth = project_points(pivot, camera, 512)
    torch.testing.assert_close(pixel, torch.tensor([[[256.0, 256.0]]]), atol=1e-3, rtol=0)
    assert depth.item() == pytest.approx(FFHQ_RADIUS - FFHQ_PIVOT[2], abs=1e-5)
    # World up (+y) is up in the image; the subject's left (+x) is on the image's right.
    up_right, _ = project_points(torch.tensor([[[0.1, 0.1, 0.2]]]), camera, 512)
    assert up_right[0, 0, 0] > 256 and up_right[0, 0, 1] < 256
    # Any look-at camera aims at the pivot; positive yaw moves to +x, positive pitch down.
    cams = look_at_camera(torch.tensor([0.3, -0.2, 0.0]), torch.tensor([0.0, 0.2, -0.25]))
    pixel, _ = project_points(pivot.expand(3, 1, 3), cams, 512)
    torch.testing.assert_close(pixel, torch.full((3, 1, 2), 256.0), atol=1e-3, rtol=0)
    origins = split_camera(cams)[0][:, :3, 3]
    torch.testing.assert_close(origins.norm(dim=-1), torch.full((3,), FFHQ_RADIUS))
    assert origins[0, 0] > 0 and origins[1, 0] < 0 and origins[1, 1] < 0 and origins[2, 1] > 0


def test_orbit():
    cams = orbit_cameras(8)
    assert cams.shape == (8, 25)
    origins = split_camera(cams)[0][:, :3, 3]
    torch.testing.assert_close(origins.norm(dim=-1), torch.full((8,), FFHQ_RADIUS))
    torch.testing.assert_close(cams[0], look_at_camera(0.0, -0.05 + 0.25)[0])
    torch.testing.assert_close(cams[2], look_at_camera(0.35, -0.05)[0], atol=1e-6, rtol=0)


def test_rays_hit_known_points():
    camera = look_at_camera(0.0, 0.0)
    origins, directions = rays(camera, 5)
    assert origins.shape == directions.shape == (1, 25, 3)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(1, 25))
    # The centre pixel of an odd image looks straight at the pivot.
    torch.testing.assert_close(directions[0, 12], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(origins[0, 12], torch.tensor([0.0, 0.0, FFHQ_RADIUS]), atol=1e-5, rtol=0)
    # Without the half-pixel offset, ray 0 goes through the top-left image corner: half the FOV.
    _, corner = rays(camera, 5, pixel_offset=0.0)
    t = 0.5 / FFHQ_FOCAL
    expected = torch.nn.functional.normalize(torch.tensor([-t, t, -1.0]), dim=0)
    torch.testing.assert_close(corner[0, 0], expected, atol=1e-6, rtol=0)


def test_points_on_a_ray_project_to_its_pixel():
    g = torch.Generator().manual_seed(1)
    cams = look_at_camera(torch.rand(2, generator=g) - 0.5, torch.rand(2, generator=g) - 0.5)
    res = 12
    origins, directions = rays(cams, res)
    t = 2 + torch.rand(2, res * res, 1, generator=g)
    points = origins + t * directions
    pixel, depth = project_points(points, cams, res)
    i, j = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    centres = torch.stack([j, i], -1).reshape(1, -1, 2).float() + 0.5
    torch.testing.assert_close(pixel, centres.expand(2, -1, -1), atol=1e-3, rtol=0)
    assert (depth > 0).all()
    # Clip space agrees with the pixel convention of the rasteriser.
    clip = points_to_clip(points, cams)
    torch.testing.assert_close(
        clip[..., :2] / clip[..., 3:], ((2 * centres - res) / res).expand(2, -1, -1), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(clip[..., 3], world_to_camera(points, cams)[..., 2])
    assert (clip[..., 2] / clip[..., 3]).sub(1 - 0.01 / depth).abs().max() < 1e-5


def test_fitted_transform_conversion_projects_identically():
    g = torch.Generator().manual_seed(2)
    # A model -> canonical similarity like FaceVerse's: flip y and z, scale, shift.
    to_canonical = torch.eye(4)
    to_canonical[:3, :3] = 0.2 * random_rotation(1, g)[0] @ torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    to_canonical[:3, 3] = torch.tensor([0.01, -0.02, 0.05])
    # A fitted model -> OpenCV camera similarity: the head 5 units in front, turned a little.
    mesh_to_camera = torch.eye(4).repeat(3, 1, 1)
    tilt = random_rotation(3, g)
    small = torch.linalg.matrix_exp(0.3 * (tilt - tilt.transpose(1, 2)) / 2)
    scale = torch.tensor([0.9, 1.0, 1.2])[:, None, None]
    mesh_to_camera[:, :3, :3] = (
        scale * small @ torch.diag(torch.tensor([1.0, 1.0, -1.0])) @ torch.diag(torch.tensor([1.0, -1.0, 1.0]))
    )
    mesh_to_camera[:, :3, 3] = torch.tensor([[0.1, -0.05, 5.0], [0.0, 0.0, 4.5], [-0.2, 0.1, 5.5]])
    focal = 4.2647
    k = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])
    model_points = torch.randn(3, 50, 3, generator=g) * 0.5
    cam_points = model_points @ mesh_to_camera[:, :3, :3].transpose(1, 2) + mesh_to_camera[:, None, :3, 3]
    fitted_pixels = cam_points @ (k * torch.tensor([512.0, 512.0, 1.0])[:, None]).T
    fitted_pixels = fitted_pixels[..., :2] / fitted_pixels[..., 2:]

    camera = camera_from_mesh_transform(mesh_to_camera, to_canonical, k)
    canonical = model_points @ to_canonical[:3, :3].T + to_canonical[:3, 3]
    pixels, depth = project_points(canonical, camera, 512)
    torch.testing.assert_close(pixels, fitted_pixels, atol=2e-3, rtol=0)
    assert (depth > 0).all()
    rot = split_camera(camera)[0][:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    # The camera distance is the fitted distance in canonical units (scale 0.2 / fitted scale).
    distance = split_camera(camera)[0][:, :3, 3].sub(to_canonical[:3, 3]).norm(dim=-1)
    expected = 0.2 * mesh_to_camera[:, :3, 3].norm(dim=-1) / scale.flatten()
    torch.testing.assert_close(distance, expected, rtol=1e-4, atol=0)
    with pytest.raises((ValueError, TypeError), match="mesh_to_camera"):
        camera_from_mesh_transform(torch.eye(4), to_canonical)


def test_look_at_matches_eg3d_polar_mapping():
    # EG3D maps the vertical angle v to the polar angle arccos(1 - 2 v / pi).
    pitch = 0.3
    origin = split_camera(look_at_camera(0.0, pitch))[0][0, :3, 3]
    polar = math.acos(1 - 2 * (math.pi / 2 + pitch) / math.pi)
    assert origin[1].item() == pytest.approx(FFHQ_RADIUS * math.cos(polar), abs=1e-5)
