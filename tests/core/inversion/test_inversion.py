"""The inversion pipeline on the real tiny prior and encoders: ablations, streaming == batch, sessions, baselines."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from invertavatar_core.config.presets import preset_experiment
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.inversion.pipeline import InversionPipeline, Inverter, InverterSession

STREAM_TOLERANCE = 1e-5
"""Streaming and batch differ only in how renders are batched (float32 reduction order)."""

TABLE3 = {
    "full": {},
    "without_both_encoders": {"texture": None, "static": None},
    "without_texture_encoder": {"texture": None},
    "triplane_offsets": {"static": {"name": "triplane_offset_unet", "preset": "tiny"}},
}


def _max_difference(a, b) -> float:
    ta, tb = a.features.tensors(), b.features.tensors()
    assert ta.keys() == tb.keys()
    return max(float((ta[k] - tb[k]).detach().abs().max()) for k in ta)


@pytest.mark.parametrize("variant", list(TABLE3))
def test_table3_ablations_build_and_run_through_the_same_pipeline(full_registry, tiny_frames, variant):
    experiment = preset_experiment(full_registry, "tiny", encoders=TABLE3[variant], aggregator=None)
    inverter = full_registry.create("inverter", experiment.inverter, registry=full_registry, experiment=experiment)
    assert isinstance(inverter, Inverter)
    avatar = inverter.invert(tiny_frames[:1])
    coarse = inverter.models.prior.canonical(InversionPipeline(inverter.models).latent(tiny_frames.image[:1]))
    changed = _max_difference(avatar, type(avatar)(coarse, {}))
    if variant == "without_both_encoders":
        assert changed == 0.0  # the coarse avatar
    else:
        assert changed > 0.0  # the fine stage edited the canonical features
    render = avatar.animate(inverter.models.prior, tiny_frames.expression_uv[:2], tiny_frames.camera[:2])
    assert render.image.shape == (2, 3, *tiny_frames.image.shape[-2:]) and torch.isfinite(render.image).all()


def test_streaming_and_batch_give_the_same_avatar(full_registry, tiny_base, tiny_models, tiny_frames, tmp_path):
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    batch = inverter.invert(tiny_frames)
    session = inverter.start(tiny_frames[0])
    assert isinstance(session, InverterSession)
    one = session.avatar()
    for t in range(1, len(tiny_frames)):
        session.add(tiny_frames[t])
    streamed = session.avatar()
    assert streamed.frame_count == batch.frame_count == 4
    assert _max_difference(streamed, batch) <= STREAM_TOLERANCE
    assert _max_difference(one, batch) > 1e-4  # later frames did change the avatar
    torch.testing.assert_close(streamed.features.ws, inverter.invert(tiny_frames[:1]).features.ws)  # w+ from frame 0

    # The session state goes through a safetensors file and continues identically.
    half = inverter.start(tiny_frames[:2])
    save_file({k: v.contiguous() for k, v in half.state_dict().items()}, str(tmp_path / "session.safetensors"))
    resumed = inverter.start(tiny_frames[:1]).load_state_dict(load_file(str(tmp_path / "session.safetensors")))
    resumed.add(tiny_frames[2:])
    assert _max_difference(resumed.avatar(), batch) <= STREAM_TOLERANCE


@pytest.mark.parametrize("name", ["per_frame_mean", "pti"])
def test_baselines_run_by_name(full_registry, tiny_base, tiny_models, tiny_frames, name):
    inverter = full_registry.create(
        "inverter",
        full_registry.tiny_config("inverter", name),
        registry=full_registry,
        experiment=tiny_base,
        models=tiny_models,
    )
    avatar = inverter.invert(tiny_frames[:2])
    assert avatar.inverter == name and avatar.frame_count == 2
    assert all(torch.isfinite(v).all() for v in avatar.features.tensors().values())
    session = inverter.start(tiny_frames[:1]).load_state_dict(inverter.start(tiny_frames[:2]).state_dict())
    assert _max_difference(session.avatar(), avatar) <= STREAM_TOLERANCE


def test_per_frame_mean_of_one_frame_is_the_one_shot_avatar(full_registry, tiny_base, tiny_models, tiny_frames):
    ours = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    mean = full_registry.create(
        "inverter", "per_frame_mean", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    assert _max_difference(mean.invert(tiny_frames[:1]), ours.invert(tiny_frames[:1])) <= STREAM_TOLERANCE


def test_model_checkpoint_round_trip(full_registry, tiny_base, tiny_models, tiny_frames, tmp_path):
    tiny_models.save(tmp_path / "ckpt")
    loaded = InversionModels.load(tmp_path / "ckpt", full_registry).eval()
    a = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    b = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=loaded.experiment, models=loaded
    )
    assert _max_difference(a.invert(tiny_frames[:2]), b.invert(tiny_frames[:2])) == 0.0
    (tmp_path / "ckpt" / "encoders" / "texture" / "model.safetensors").unlink()
    with pytest.raises(Exception, match="model.safetensors"):
        InversionModels.load(tmp_path / "ckpt", full_registry)


def test_wrong_inputs_fail_clearly(full_registry, tiny_base, tiny_models, tiny_frames):
    inverter = full_registry.create(
        "inverter", "incremental", registry=full_registry, experiment=tiny_base, models=tiny_models
    )
    with pytest.raises(ValueError, match="at least one frame"):
        inverter.invert(tiny_frames[:0])
    with pytest.raises(KeyError, match="ws"):
        inverter.start(tiny_frames[:1]).load_state_dict({"frames": torch.tensor(1)})


def test_saved_encoder_configs_drop_their_init_only_weight_files(full_registry):
    from invertavatar_core.inversion.models import _clear_init_only

    for name in ("e4e", "texture_unet", "triplane_sft_unet", "triplane_offset_unet"):
        config = full_registry.validate_config("encoder", {"name": name, "preset": "tiny", "ir_se50_weights": "w.pth"})
        cleared = _clear_init_only(config)
        assert config.ir_se50_weights is not None and cleared.ir_se50_weights is None, name
        assert cleared.model_dump(exclude={"ir_se50_weights"}) == config.model_dump(exclude={"ir_se50_weights"})
    for entry in full_registry.entries():  # each declared init-only field is a real field of that config
        assert set(entry.config_cls.init_only_fields) <= set(entry.config_cls.model_fields), entry.name


def test_release_settings_group_frames_and_flip_the_residual(full_registry, tiny_models, tiny_frames):
    """Encoders with ``group_size: 4`` and the inverter's ``render_minus_image``: the session renders and
    folds the released groups (3 frames -> [0, 1, 2, 0]) with the residual ``I_hat - I``."""
    from invertavatar_core.inversion.inverters.incremental import IncrementalInverter, IncrementalInverterConfig
    from invertavatar_core.inversion.pipeline import resize_square

    base = tiny_models.experiment
    encoders = {role: {**getattr(base.encoders, role).model_dump(), "group_size": 4} for role in ("texture", "static")}
    experiment = preset_experiment(full_registry, "tiny", encoders=encoders)
    models = InversionModels.build(experiment, full_registry).eval()
    models.load_state_dict(tiny_models.state_dict())
    config = IncrementalInverterConfig(residual="render_minus_image")
    avatar = IncrementalInverter(config, models).invert(tiny_frames[:3])

    pipeline = InversionPipeline(models, residual="render_minus_image")
    with torch.no_grad():
        ws = pipeline.latent(tiny_frames.image[:1])
        inputs = pipeline.encoder_inputs(models.prior.canonical(ws), tiny_frames[torch.tensor([0, 1, 2, 0])])
        render = resize_square(inputs.coarse.image, tiny_frames.image.shape[-1])
        torch.testing.assert_close(inputs.residual, render - tiny_frames.image[[0, 1, 2, 0]])
        edits = pipeline.encode({role: x for role, x in inputs.inputs.items()}, 4)
        expected = pipeline.fine(ws, edits)
    for key, value in expected.tensors().items():
        torch.testing.assert_close(avatar.features.tensors()[key], value, rtol=1e-5, atol=1e-6)
    paper = IncrementalInverter(IncrementalInverterConfig(), tiny_models).invert(tiny_frames[:3])
    assert _max_difference(paper, avatar) > 1e-5
