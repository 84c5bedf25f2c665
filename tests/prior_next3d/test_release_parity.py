"""The released GAN through ``convert release-prior``: nothing executed, strict load, parity with the release.

Reads ``../shared/fixtures/official-release/prior`` (a random-weight snapshot in the format of
``ani3dgan512.pkl`` with the outputs the authors' code computes from fixed inputs; skipped when
absent). Tolerance: 1e-4 of each tensor's largest magnitude on the stored values, and 1e-4 of the
absolute sum (square sum) on the full-tensor statistics (docs/release-weights.md).
"""

import json
import os
from pathlib import Path

import pytest
import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.geometry.cameras import rays
from invertavatar_core.io.checkpoints import load_component

pytestmark = [pytest.mark.assets, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(os.environ.get("INVERTAVATAR_RELEASE_FIXTURES", REPO_ROOT.parent / "shared/fixtures/official-release"))
PRIOR = FIXTURE / "prior"
PICKLE = PRIOR / "ani3dgan_small.pkl"
TOLERANCE = 1e-4
LEVELS = ("rgb32", "x32", "x64", "x128")


def _require_fixture() -> None:
    if not PICKLE.is_file():
        pytest.skip(f"release fixtures not found at {FIXTURE} (set INVERTAVATAR_RELEASE_FIXTURES)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``(checkpoint folder, canary path)``: the fixture converted with the canary pointed at a scratch file."""
    _require_fixture()
    from invertavatar_prior_next3d.release.prior import convert_release_prior

    scratch = tmp_path_factory.mktemp("release-prior")
    canary = scratch / "CANARY_EXECUTED"
    out = scratch / "prior"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IA_FIXTURE_CANARY", str(canary))
        convert_release_prior(PICKLE, out)
    return out, canary


@pytest.fixture(scope="module")
def io():
    """``(stored tensors, io.json tensor index)``."""
    _require_fixture()
    from safetensors.torch import load_file

    return load_file(str(PRIOR / "io.safetensors")), json.loads((PRIOR / "io.json").read_text())["tensors"]


@pytest.fixture(scope="module")
def outputs(converted, io):
    """Our forward on the fixture's inputs, keyed by the fixture's output names."""
    tensors, _ = io
    prior, _ = load_component(converted[0], default_registry(), "prior")
    prior.eval()
    z, c = tensors["in.z"], tensors["in.c"]
    expression = tensors["in.uvcoords_image"].permute(0, 3, 1, 2).float()
    out = {}
    with torch.no_grad():
        ws = prior.mapping(z, c[:, :25], 0.7, truncation_cutoff=14)
        features = prior.canonical(ws)
        _, static = prior.static_generator(ws, noise_mode="const", keep={*LEVELS, "x256"})
        conditions, full_alpha = prior.face_module.conditions(features.texture, features.static, expression)
        face, _ = prior.face_module.synthesis(ws, batch_size=2, noise_mode="const", conditions=conditions)
        render = prior.render(features, expression, c[:, 25:])
    out["out.ws"] = ws
    for i, level in enumerate(LEVELS):
        out[f"out.texture_feats.{i}"] = features.texture[level]
        out[f"out.static_feats.{i}"] = static[level]
    out["out.static_feats.4"] = static["x256"]
    out["out.static_feats.5"] = features.static["triplane"]
    for i, (block, part) in enumerate((("32", "image"), ("32", "features"), ("64", "features"), ("128", "features"))):
        condition = conditions[block]
        out[f"out.rasterized.{i}"] = torch.cat([getattr(condition, part), condition.alpha], dim=1)
    out["out.full_alpha_256"] = full_alpha
    out["out.face_synthesis"] = face
    out["out.triplane"] = render.triplane
    out["out.feature_image"] = render.feature_image
    out["out.image_raw"] = render.raw
    out["out.image_depth"] = render.depth
    out["out.image"] = render.image
    out["out.image@corner"] = render.image[..., 496:, 496:]
    origins, directions = rays(c[:, 25:], 128, pixel_offset=0.0)
    out["out.ray_origins_first"] = origins[:, :1]
    out["out.ray_dirs"] = directions.transpose(1, 2).reshape(2, 3, 128, 128)
    return out


def test_conversion_executes_nothing_and_loads_strictly(converted):
    out, canary = converted
    assert not canary.exists(), canary.read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        ".invertavatar",
        "config.json",
        "conversion.json",
        "model.safetensors",
    ]
    prior, config = load_component(out, default_registry(), "prior")  # strict: raises on any mismatch
    assert (config.z_dim, config.w_dim, config.channel_base, config.channel_max) == (64, 512, 2048, 16)
    assert config.conv_clamp is None and config.superresolution_conv_clamp == 256.0
    assert config.face_condition_order == "after_torgb" and config.ray_pixel_offset == 0.0


def test_every_official_tensor_is_used_or_explained(converted):
    report = json.loads((converted[0] / "conversion.json").read_text())
    manifest = json.loads((PRIOR / "ani3dgan_small.manifest.json").read_text())
    assert report["used"] + len(report["unused"]) == len(manifest["state_dicts"]["G_ema"]) == 444
    reasons = {item["tensor"]: item["reason"] for item in report["unused"]}
    assert "resample filter" in reasons["backbone.synthesis.b4.resample_filter"]
    assert "duplicate mapping" in reasons["face_backbone.mapping.w_avg"]
    assert "pruned" in reasons["texture_backbone.synthesis.b256.conv0.weight"]
    assert "noise" in reasons["superresolution.block1.conv1.noise_const"]
    assert "backbone.mapping.w_avg" not in reasons


def test_reads_g_ema_not_g(converted):
    # G and G_ema share every tensor object except the decoder and w_avg (fixture README, section 1).
    from invertavatar_core.io.release_pickle import load_release_pickle, record_state_dict

    data = load_release_pickle(PICKLE)
    ours = load_component(converted[0], default_registry(), "prior")[0].state_dict()
    g_ema, g = record_state_dict(data["G_ema"]), record_state_dict(data["G"])
    assert torch.equal(ours["mapping_network.w_avg"], g_ema["backbone.mapping.w_avg"])
    assert not torch.equal(ours["mapping_network.w_avg"], g["backbone.mapping.w_avg"])


def _stored(entry: dict) -> list[tuple[str, str | None]]:
    if entry["stored"] == "full":
        return [("", None)]
    if isinstance(entry["stored"], list):
        return [(s["key"], s["slice"]) for s in entry["stored"]]
    return []


def _apply_slice(t: torch.Tensor, text: str) -> torch.Tensor:
    """``t[..., a:b, c:d]`` / ``t[..., ::n, ::n]`` from io.json's slice text."""
    parts = text.strip("[]").split(",")
    assert parts[0].strip() == "..."
    index = [slice(*(int(v) if v else None for v in p.strip().split(":"))) for p in parts[1:]]
    return t[(Ellipsis, *index)]


PARITY_KEYS = (
    "out.ws",
    *(f"out.texture_feats.{i}" for i in range(4)),
    *(f"out.static_feats.{i}" for i in range(6)),
    *(f"out.rasterized.{i}" for i in range(4)),
    "out.full_alpha_256",
    "out.face_synthesis",
    "out.triplane",
    "out.ray_origins_first",
    "out.ray_dirs",
    "out.feature_image",
    "out.image_raw",
    "out.image_depth",
    "out.image",
    "out.image@corner",
)


@pytest.mark.parametrize("key", PARITY_KEYS)
def test_matches_the_release(outputs, io, key):
    tensors, index = io
    entry = index[key]
    ours = outputs[key].float()
    assert list(ours.shape) == entry["shape"]
    for stored_key, text in _stored(entry):
        reference = tensors[stored_key or key].float()
        mine = ours if text is None else _apply_slice(ours, text)
        scale = reference.abs().max().clamp_min(1e-12)
        assert float((mine - reference).abs().max() / scale) <= TOLERANCE, stored_key or key
    # Statistics of the whole tensor catch what the stored slices miss (wsum_mod13: permutations).
    flat = ours.double().flatten()
    weights = (torch.arange(flat.numel(), dtype=torch.float64) % 13) - 6
    stats = {
        "sum": flat.sum(),
        "abs_sum": flat.abs().sum(),
        "sq_sum": flat.square().sum(),
        "wsum_mod13": flat @ weights,
    }
    for name, value in stats.items():
        scale = entry["sq_sum"] if name == "sq_sum" else entry["abs_sum"]
        assert abs(float(value) - entry[name]) <= TOLERANCE * max(scale, 1e-12), (key, name)


def test_few_shot_snapshot_generator_converts_and_renders_like_the_release(tmp_path, monkeypatch):
    # The generator inside FSInvertAvatar.pkl (G.generator: w_dim 16, gen_mask_cond, a rebuilt SR):
    # the e4e render of the 1-frame case depends only on w+ and the frame, so it checks the converter
    # on a second configuration.
    encoders = FIXTURE / "encoders"
    if not (encoders / "fsinvertavatar_small.pkl").is_file():
        pytest.skip(f"encoder fixtures not found at {encoders}")
    import numpy as np
    from safetensors.torch import load_file

    from invertavatar_prior_next3d.release.prior import convert_release_prior

    canary = tmp_path / "CANARY_EXECUTED"
    monkeypatch.setenv("IA_FIXTURE_CANARY", str(canary))
    convert_release_prior(encoders / "fsinvertavatar_small.pkl", tmp_path / "prior", key="G.generator")
    assert not canary.exists()
    prior, config = load_component(tmp_path / "prior", default_registry(), "prior")
    assert (config.w_dim, config.superresolution_channels) == (16, (64, 32))
    tensors = load_file(str(encoders / "io.safetensors"))
    index = json.loads((encoders / "io.json").read_text())
    uv = np.load(encoders / "dataset/orthRender256x256_face_eye/A/00000000.npy")[..., :3].astype(np.float32)
    uv[..., 2] = uv[..., 2] >= 0.5  # the release's loader thresholds the mask
    label = torch.tensor(index["inputs"]["frames"]["A/00000000.png"]["label_c"])
    with torch.no_grad():
        render = prior.eval().render(
            prior.canonical(tensors["eval.ws"]), torch.from_numpy(uv).permute(2, 0, 1)[None], label[None, 25:]
        )
    for name, ours in (("e4e_image_raw", render.raw), ("e4e_image", render.image)):
        for stored in index["tensors"][f"eval.f1.g0.{name}"]["stored"]:
            reference = tensors[stored["key"]][:1]
            mine = _apply_slice(ours, stored["slice"])
            assert float((mine - reference).abs().max() / reference.abs().max()) <= TOLERANCE, stored["key"]


def test_command_line_converts_and_never_overwrites(tmp_path, monkeypatch, capsys):
    _require_fixture()
    from invertavatar_core.cli import main

    monkeypatch.setenv("IA_FIXTURE_CANARY", str(tmp_path / "CANARY_EXECUTED"))
    out = tmp_path / "prior"
    assert main(["convert", "release-prior", str(PICKLE), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "used 332 official tensors; 112 not used" in printed and "conversion.json" in printed
    assert main(["convert", "release-prior", str(PICKLE), "--out", str(out)]) == 2
    assert "holds earlier output (component); pass --overwrite" in capsys.readouterr().err
    assert main(["convert", "release-prior", str(PICKLE), "--out", str(out), "--overwrite"]) == 0
    assert (out / "conversion.json").is_file() and (out / ".invertavatar").is_file()
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["convert", "release-prior", str(PICKLE), "--out", str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "holds files invertavatar did not write" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert main(["convert", "release-prior", str(PICKLE), "--out", str(tmp_path / "x"), "--key", "G_ema.nope"]) == 2
    assert "no submodule 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "CANARY_EXECUTED").exists()
