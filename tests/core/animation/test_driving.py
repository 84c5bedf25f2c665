"""Driving an avatar: same identity keeps the driving cameras, cross identity keeps the avatar's identity and
transfers relative head pose; mode choice; the morphable-model check."""

import dataclasses

import pytest
import torch
from camera_turns import azimuth, yaw_turn

from invertavatar_core.animation.driving import (
    SAME_IDENTITY_DISTANCE,
    AvatarAnimator,
    DrivingFrame,
    animation_steps,
    avatar_source_camera,
    check_driving_model,
    choose_mode,
    identity_distance,
    relative_cameras,
)
from invertavatar_core.data.datasets import MorphableModelMismatchError
from invertavatar_core.errors import UserError
from invertavatar_core.geometry.cameras import look_at_camera, split_camera


@pytest.fixture(scope="module")
def avatar(full_registry, tiny_base, tiny_models, tiny_frames):
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    made = inverter.invert(tiny_frames[:2])
    return dataclasses.replace(made, source_camera=look_at_camera(-0.2, 0.05))


@pytest.fixture(scope="module")
def animator(full_registry, tiny_base, tiny_models, avatar):
    model = full_registry.create("morphable_model", tiny_base.morphable_model)
    rasterizer = full_registry.create("rasterizer", tiny_base.rasterizer)
    return AvatarAnimator(avatar, tiny_models.prior, model, rasterizer)


def _frames(observation, cameras=None, identity=None):
    for t in range(len(observation)):
        yield DrivingFrame(
            camera=observation.camera[t : t + 1] if cameras is None else cameras[t : t + 1],
            expression_uv=observation.expression_uv[t : t + 1],
            identity=observation.identity[t : t + 1] if identity is None else identity,
            expression=observation.expression[t : t + 1],
        )


def test_same_identity_uses_the_driving_cameras_and_reexpresses_on_the_avatar(animator, avatar, tiny_frames):
    steps = list(animation_steps(animator, _frames(tiny_frames), mode="same"))
    assert len(steps) == len(tiny_frames)
    for t, step in enumerate(steps):
        assert torch.equal(step.camera, tiny_frames.camera[t : t + 1])
        expected = animator.expression_uv(tiny_frames.expression[t : t + 1])
        assert torch.equal(step.expression_uv, expected)
    # Driving expressions differ from frame to frame, and so do the renders.
    first, last = (animator.render(s.expression_uv, s.camera) for s in (steps[0], steps[-1]))
    assert (first - last).abs().mean() > 1e-4


def test_cross_identity_keeps_the_avatar_identity_and_transfers_relative_yaw(animator, avatar, tiny_frames):
    start = look_at_camera(0.1, 0.0)
    turns = torch.tensor([0.0, 0.3, -0.15, 0.3])
    driving = torch.cat([yaw_turn(start, float(a)) for a in turns])
    stranger = torch.randn(1, avatar.identity.shape[1], generator=torch.Generator().manual_seed(5)) * 2
    same = list(animation_steps(animator, _frames(tiny_frames, driving), mode="same"))
    cross = list(animation_steps(animator, _frames(tiny_frames, driving, identity=stranger), mode="cross"))
    for s, c in zip(same, cross, strict=True):
        # The driver's identity never reaches the render: only the expression (and the pose) does.
        assert torch.equal(s.expression_uv, c.expression_uv)
    source = avatar.source_camera
    torch.testing.assert_close(cross[0].camera, source)  # the reference frame puts the avatar at its source pose
    change = azimuth(torch.cat([c.camera for c in cross])) - azimuth(source)
    torch.testing.assert_close(change, turns, atol=1e-5, rtol=0)  # driving yaw +0.3 -> avatar yaw +0.3
    # The source pose is kept where the driver's is not: the driving cameras start at yaw 0.1, the avatar at -0.2.
    assert float((azimuth(cross[1].camera) - azimuth(driving[1:2])).abs()) == pytest.approx(0.3, abs=1e-5)
    # With the same camera the cross-identity frame renders exactly as the same-identity one.
    image_same = animator.render(same[1].expression_uv, cross[1].camera)
    image_cross = animator.render(cross[1].expression_uv, cross[1].camera)
    assert torch.equal(image_same, image_cross)


def test_relative_cameras_keep_a_rigid_camera_and_the_source_intrinsics():
    reference, source = look_at_camera(0.2, -0.1), look_at_camera(-0.3, 0.1, focal=4.0)
    moved = relative_cameras(look_at_camera(torch.tensor([0.2, 0.5]), torch.tensor([-0.1, 0.0])), reference, source)
    cam2world, intrinsics = split_camera(moved)
    torch.testing.assert_close(cam2world[0], split_camera(source)[0][0], atol=1e-5, rtol=0)
    rotation = cam2world[:, :3, :3]
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5, rtol=0)
    assert torch.equal(intrinsics, split_camera(source)[1].expand(2, 3, 3))


def test_mode_choice_and_identity_distance():
    a = torch.randn(1, 48, generator=torch.Generator().manual_seed(0))
    b = torch.randn(1, 48, generator=torch.Generator().manual_seed(1))
    assert identity_distance(a, a) == 0.0 and identity_distance(a, b) > 1.0
    assert identity_distance(torch.zeros(1, 4), torch.zeros(1, 4)) == 0.0
    assert choose_mode("auto", a, a + 0.01)[0] == "same"
    mode, why = choose_mode("auto", a, b)
    assert mode == "cross" and f"> {SAME_IDENTITY_DISTANCE}" in why
    assert choose_mode("auto", a, b, own_sources=True)[0] == "same"
    assert choose_mode("auto", None, b)[0] == "same"  # cannot tell: as given
    assert choose_mode("cross", a, a) == ("cross", "as requested")
    with pytest.raises(UserError, match="--mode"):
        choose_mode("sideways", a, b)


def test_a_driving_fit_of_another_model_is_refused_naming_both(animator, avatar, tiny_frames):
    procedural, model = {"name": "procedural"}, animator.model
    with pytest.raises(
        MorphableModelMismatchError, match=r"fit/ was fitted with morphable model 'ict' but .*'procedural'"
    ):
        check_driving_model(procedural, {"name": "ict", "path": "x"}, model, None, avatar="A/", driving="fit/")
    check_driving_model(
        procedural, {"name": "procedural", "rows": 56}, model, avatar.identity, avatar="A/", driving="f"
    )
    check_driving_model(procedural, None, model, avatar.identity, avatar="A/", driving="fit/")  # nothing recorded
    # An avatar whose identity coefficients are not its model's (made with another model's variant).
    with pytest.raises(MorphableModelMismatchError, match="avatar A/ has 7 identity coefficients"):
        check_driving_model(procedural, None, model, torch.zeros(1, 7), avatar="A/", driving="fit/")
    # A folder that records no model is still caught on the coefficient sizes, before any rendering.
    wrong = DrivingFrame(camera=tiny_frames.camera[:1], expression=torch.zeros(1, 53))
    with pytest.raises(MorphableModelMismatchError, match="53 values.*'procedural' has 25"):
        next(animation_steps(animator, [wrong], mode="same", avatar_model="procedural", driving="fit/"))


def test_an_avatar_without_a_source_camera_starts_from_the_frontal_view(avatar):
    camera, note = avatar_source_camera(dataclasses.replace(avatar, source_camera=None))
    assert torch.equal(camera, look_at_camera(0.0, 0.0)) and "frontal" in note
    camera, note = avatar_source_camera(avatar)
    assert torch.equal(camera, avatar.source_camera) and note == ""


def test_avatar_source_camera_round_trips_through_save(avatar, tmp_path):
    from invertavatar_core.inversion.avatar import Avatar

    avatar.save(tmp_path / "a")
    assert torch.equal(Avatar.load(tmp_path / "a").source_camera, avatar.source_camera)
