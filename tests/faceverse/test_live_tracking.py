"""The live tracker's per-frame fit: warm-started Gauss-Newton steps recover expression and head motion from
synthetic landmark projections; pose <-> camera round trip. (MediaPipe itself is exercised by the live command.)"""

import math

import pytest
import torch

from invertavatar_core.geometry.cameras import look_at_camera, project_points, split_camera
from invertavatar_faceverse.fitting import FittingConfig, model_landmarks
from invertavatar_faceverse.live_tracking import LiveFaceTracker, LiveTrackerConfig, pose_camera, pose_from_camera
from invertavatar_faceverse.procedural import ProceduralHeadModel, ProceduralHeadModelConfig

TINY = {"rows": 56, "columns": 48, "mouth_rows": 2, "eye_rings": 6, "eye_segments": 12}


@pytest.fixture(scope="module")
def head() -> ProceduralHeadModel:
    return ProceduralHeadModel(ProceduralHeadModelConfig(**TINY))


def _project(model, identity, expression, camera, size=512):
    eyes = torch.zeros(1, model.n_eye)
    return project_points(model_landmarks(model, identity, expression, eyes), camera, size)[0][0]


def _relative_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Axis-angle ``(3,)`` of camera ``b``'s rotation relative to camera ``a``'s (cam-to-world, world frame)."""
    from kornia.geometry.conversions import rotation_matrix_to_axis_angle

    ra, rb = split_camera(a)[0][0, :3, :3], split_camera(b)[0][0, :3, :3]
    return rotation_matrix_to_axis_angle((rb @ ra.T)[None].contiguous())[0]


def test_pose_and_camera_round_trip():
    poses = torch.tensor([[0.1, -0.3, 0.05, 0.01, -0.02, 2.6], [0.0, 0.0, 0.0, 0.0, 0.0, 2.7]])
    torch.testing.assert_close(pose_from_camera(pose_camera(poses)), poses, atol=1e-5, rtol=0)
    # The zero pose at distance 2.7 is the frontal look-at camera's rotation (its translation differs by the pivot).
    frontal = split_camera(look_at_camera(0.0, 0.0))[0][0, :3, :3]
    torch.testing.assert_close(split_camera(pose_camera(poses[1:]))[0][0, :3, :3], frontal, atol=1e-6, rtol=0)


def test_warm_started_steps_follow_expression_and_head_turns(head):
    torch.manual_seed(0)
    names = head.expression_names
    identity = 0.5 * torch.randn(1, head.n_identity)
    config = LiveTrackerConfig(identity_steps=300)
    tracker = LiveFaceTracker(head, config, fitting=FittingConfig(identity_steps=300))
    jaw, smile = names.index("jaw_open"), names.index("smile_left")
    frames = []
    for k, (yaw, pitch, jaw_open) in enumerate(
        [(0.0, 0.0, 0.1), (0.06, 0.0, 0.4), (0.12, 0.04, 0.6), (0.12, 0.04, 0.6)]
    ):
        expression = torch.zeros(1, head.n_expression)
        expression[0, jaw], expression[0, smile] = jaw_open, 0.3 * (k > 1)
        camera = look_at_camera(yaw, pitch)
        frames.append((camera, expression, tracker.fit_landmarks(_project(head, identity, expression, camera))))
    assert tracker.started and tracker.identity.shape == (1, head.n_identity)
    first_camera = frames[0][2].camera
    # The jaw follows the truth (0.1, 0.4, 0.6): it opens frame after frame, to within 0.15 (the
    # identity comes from one frame, so some of the jaw's shape may be taken for identity).
    jaws = [float(tracked.expression[0, jaw]) for _, _, tracked in frames[:3]]
    assert jaws[0] < jaws[1] < jaws[2]
    for camera, expression, tracked in frames[1:]:
        assert tracked.iterations <= config.recover_iterations and tracked.error < 0.01
        assert float(tracked.expression.min()) >= 0 and float(tracked.expression.max()) <= 1
        assert abs(float(tracked.expression[0, jaw] - expression[0, jaw])) < 0.15
        # The head's turn since the first frame, as the cameras see it, is recovered.
        truth = _relative_rotation(frames[0][0], camera)
        found = _relative_rotation(first_camera, tracked.camera)
        assert float((truth - found).norm()) < math.radians(1.5)
    # A still face (the same landmarks again and again): the remaining steps shrink; it settles.
    camera, expression, _ = frames[3]
    poses = [frames[3][2].pose] + [
        tracker.fit_landmarks(_project(head, identity, expression, camera)).pose for _ in range(3)
    ]
    steps = [float((b - a).abs().max()) for a, b in zip(poses, poses[1:], strict=False)]
    assert steps[0] > steps[1] > steps[2] and steps[2] < 2e-3, steps


def test_landmarks_outside_the_crop_frame_are_ignored_not_fatal(head):
    torch.manual_seed(0)
    identity = torch.zeros(1, head.n_identity)
    tracker = LiveFaceTracker(head, fitting=FittingConfig(identity_steps=200))
    points = _project(head, identity, torch.zeros(1, head.n_expression), look_at_camera(0.0, 0.0))
    tracker.fit_landmarks(points)
    shifted = points.clone()
    shifted[:40] = float("nan")  # a few points lost (e.g. occluded, off the frame)
    tracked = tracker.fit_landmarks(shifted)
    assert torch.isfinite(tracked.pose).all() and tracked.error < 0.01


class SquaredExpressions:
    """The procedural head with its expression weights squared: a model that is not linear in them."""

    def __init__(self, head):
        self.head = head
        self.n_identity, self.n_expression, self.n_eye = head.n_identity, head.n_expression, head.n_eye
        self.landmark_indices, self.landmark_valid, self.to_canonical = (
            head.landmark_indices,
            head.landmark_valid,
            head.to_canonical,
        )
        self.faces, self.uvs, self.face_mask = head.faces, head.uvs, head.face_mask

    def vertices(self, identity, expression, eyes=None):
        return self.head.vertices(identity, expression.square(), eyes)


def test_a_model_not_linear_in_its_expressions_is_evaluated_in_full(head):
    model = SquaredExpressions(head)
    jaw = head.expression_names.index("jaw_open")
    tracker = LiveFaceTracker(model, fitting=FittingConfig(identity_steps=200))
    identity = torch.zeros(1, head.n_identity)
    jaws = []
    for k, opening in enumerate((0.3, 0.5, 0.7)):
        expression = torch.zeros(1, head.n_expression)
        expression[0, jaw] = opening
        tracked = tracker.fit_landmarks(_project(model, identity, expression, look_at_camera(0.02 * k, 0.0)))
        jaws.append(float(tracked.expression[0, jaw]))
        assert tracked.error < 0.01  # the landmarks are matched: the points are the model's, not a linearisation
    assert tracker._linear is False and jaws[0] < jaws[1] < jaws[2]
