"""EG3D initialisation: G_static, the mapping, the decoder and SR taken by shape; training starts from it."""

import copy
import os
from pathlib import Path

import pytest
import torch

from invertavatar_core.io.checkpoints import save_component
from invertavatar_core.io.release_pickle import record_state_dict
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig
from invertavatar_prior_next3d.training import GanStage, PriorTrainingConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(os.environ.get("INVERTAVATAR_RELEASE_FIXTURES", REPO_ROOT.parent / "shared/fixtures/official-release"))
PICKLE = FIXTURE / "prior/ani3dgan_small.pkl"


@pytest.fixture(scope="module")
def eg3d_like():
    """The fixture's G_ema without G_tex and G_face: the layout of an EG3D TriPlaneGenerator."""
    if not PICKLE.is_file():
        pytest.skip(f"release fixtures not found at {FIXTURE} (set INVERTAVATAR_RELEASE_FIXTURES)")
    from invertavatar_core.io.release_pickle import load_release_pickle

    record = copy.copy(load_release_pickle(PICKLE)["G_ema"])
    record.children = {k: v for k, v in record.children.items() if k not in ("texture_backbone", "face_backbone")}
    return record


@pytest.mark.assets
def test_eg3d_initialises_static_mapping_decoder_and_superresolution(eg3d_like):
    from invertavatar_prior_next3d.release.prior import initialise_from_eg3d, is_eg3d

    assert is_eg3d(eg3d_like)
    conversion = initialise_from_eg3d(eg3d_like, seed=3)
    ours, theirs = conversion.prior.state_dict(), record_state_dict(eg3d_like)
    pairs = {
        "static_generator.blocks.6.torgb.weight": "backbone.synthesis.b256.torgb.weight",
        "static_generator.blocks.2.conv0.noise_const": "backbone.synthesis.b16.conv0.noise_const",
        "mapping_network.layers.1.weight": "backbone.mapping.fc1.weight",
        "mapping_network.w_avg": "backbone.mapping.w_avg",
        "renderer.decoder.out.bias": "decoder.net.2.bias",
        "superresolution.blocks.1.conv1.weight": "superresolution.block1.conv1.weight",
    }
    for mine, source in pairs.items():
        assert torch.equal(ours[mine], theirs[source]), mine
    assert {name.split(".")[0] for name in conversion.random} == {"texture_generator", "face_module"}
    # A training start, not a reproduction: our defaults, not the release settings.
    assert conversion.config.face_condition_order == "before_torgb" and conversion.config.ray_pixel_offset == 0.5
    again = initialise_from_eg3d(eg3d_like, seed=3).prior.state_dict()
    other = initialise_from_eg3d(eg3d_like, seed=4).prior.state_dict()
    name = "texture_generator.blocks.0.const"
    assert torch.equal(again[name], ours[name]) and not torch.equal(other[name], ours[name])


@pytest.mark.assets
def test_eg3d_tensors_of_another_shape_are_reported_not_loaded(eg3d_like):
    from invertavatar_prior_next3d.release.prior import initialise_from_eg3d

    record = copy.deepcopy(eg3d_like)
    decoder_out = record.children["decoder"].children["net"].children["2"]
    decoder_out.parameters["weight"] = torch.zeros(33, 48)  # an output layer of another width
    conversion = initialise_from_eg3d(record)
    assert "shape differs" in conversion.unused["decoder.net.2.weight"]
    assert "renderer.decoder.out.weight" in conversion.random
    assert conversion.mapping["decoder.net.0.weight"] == "renderer.decoder.hidden.weight"
    assert conversion.prior.state_dict()["renderer.decoder.out.weight"].abs().sum() > 0


def test_training_starts_from_init_prior(tmp_path):
    config = Next3DPriorConfig(preset="tiny")
    torch.manual_seed(11)
    start = Next3DPrior(config)
    save_component(start, config, tmp_path / "start")
    training = PriorTrainingConfig(prior={"name": "next3d", "preset": "tiny"}, init_prior=tmp_path / "start")
    stage = GanStage(training)
    expected = start.state_dict()
    for name, value in stage.G.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert torch.equal(
        stage.G_ema.state_dict()["mapping_network.embed.weight"], expected["mapping_network.embed.weight"]
    )
    with pytest.raises(FileNotFoundError, match="init_prior .*missing.*model.safetensors"):
        GanStage(PriorTrainingConfig(prior={"name": "next3d", "preset": "tiny"}, init_prior=tmp_path / "missing"))
