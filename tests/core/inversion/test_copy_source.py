"""The ``copy_source`` baseline: the first source frame is every output, through the registry like any inverter."""

import pytest
import torch

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.errors import UserError
from invertavatar_core.inversion.observation import Observation


def _frames(count, size=8):
    g = torch.Generator().manual_seed(count)
    return Observation(
        image=torch.rand(count, 3, size, size, generator=g) * 2 - 1,
        camera=torch.zeros(count, 25),
        expression_uv=torch.zeros(count, 3, 4, 4),
        unwrap_grid=torch.zeros(count, 4, 4, 2),
        visibility=torch.zeros(count, 1, 4, 4),
    )


def test_copy_source_returns_the_first_frame_for_every_pose_and_expression(full_registry):
    experiment = preset_experiment(full_registry, "tiny", "unused")
    inverter = full_registry.create("inverter", "copy_source", registry=full_registry, experiment=experiment)
    assert inverter.models is None  # no network is built for it
    frames = _frames(3)
    avatar = inverter.invert(frames)
    cameras = torch.randn(5, 25)
    image = avatar.animate(None, torch.randn(5, 3, 4, 4), cameras).image
    assert image.shape == (5, 3, 8, 8) and avatar.frame_count == 3
    assert all(torch.equal(image[t], frames.image[0]) for t in range(5))

    # Streaming: later frames are counted and change nothing; the session state round-trips.
    session = inverter.start(frames[1:2]).add(frames[:1]).add(frames[2:])
    assert session.avatar().frame_count == 3 and torch.equal(session.avatar().image[0], frames.image[1])
    restored = inverter.start(frames[:1]).load_state_dict(session.state_dict())
    assert torch.equal(restored.avatar().image, session.avatar().image) and restored.frames == 3
    with pytest.raises(KeyError, match="frames"):
        restored.load_state_dict({"image": frames.image[:1]})

    with pytest.raises(UserError, match="evaluation baseline"):
        avatar.save("anywhere")
