"""The released few-shot encoders through our converter: nothing executed, strict load, parity with the release.

Reads ``../shared/fixtures/official-release/encoders`` (random-weight files in the release's format
with the outputs the authors' code computes; skipped when absent). Tolerances (docs/release-weights.md):
2e-4 relative in the ``eval`` module mode, 5e-4 in the release's inference mode (``infer_sh``:
batch-statistics BatchNorm).
"""

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invertavatar_core.plugin.protocols import FeatureLevel, PriorFeatureInfo

pytestmark = pytest.mark.assets

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(os.environ.get("INVERTAVATAR_RELEASE_FIXTURES", REPO_ROOT.parent / "shared/fixtures/official-release"))
ENCODERS = FIXTURE / "encoders"
TOLERANCE = {"eval": 2e-4, "infer_sh": 5e-4}
CASES = ("f1", "f4", "f5")

FIXTURE_INFO = PriorFeatureInfo(
    num_ws=14,
    w_dim=16,
    z_dim=64,
    c_dim=25,
    image_resolution=512,
    neural_resolution=128,
    uv_resolution=256,
    texture_levels=(
        FeatureLevel("rgb32", 32, 32),
        FeatureLevel("x32", 16, 32),
        FeatureLevel("x64", 16, 64),
        FeatureLevel("x128", 16, 128),
    ),
    sft_levels=(
        FeatureLevel("x16", 8, 16),
        FeatureLevel("x32", 8, 32),
        FeatureLevel("x64", 8, 64),
        FeatureLevel("x128", 8, 128),
        FeatureLevel("x256", 4, 256),
    ),
    triplane_channels=32,
    triplane_resolution=256,
)
"""The shapes of the fixture's small generator (w_dim 16, tex / SFT widths of its manifest)."""


def _require_fixture() -> None:
    if not (ENCODERS / "fsinvertavatar_small.pkl").is_file():
        pytest.skip(f"release fixtures not found at {FIXTURE} (set INVERTAVATAR_RELEASE_FIXTURES)")


@pytest.fixture(scope="module")
def release():
    """The pickle read once: ``(G record, state dict)`` with the canary path pointed at a scratch file."""
    _require_fixture()
    from invertavatar_core.io.release_pickle import load_release_pickle, record_state_dict

    data = load_release_pickle(ENCODERS / "fsinvertavatar_small.pkl")
    return data["G"], record_state_dict(data["G"])


@pytest.fixture(scope="module")
def io():
    """The stored official outputs."""
    _require_fixture()
    from safetensors.torch import load_file

    return load_file(str(ENCODERS / "io.safetensors"))


@pytest.fixture
def converted(release, registry):
    """A fresh conversion (module modes and BatchNorm statistics are per test)."""
    from invertavatar_encoders.release import convert_encoders

    record, state = release
    return convert_encoders(record, state, FIXTURE_INFO, registry)


def _set_mode(converted, variant: str) -> None:
    from invertavatar_encoders.release import release_inference_mode

    if variant == "eval":
        for module in (converted.latent, converted.texture, converted.static):
            module.eval()
    else:
        release_inference_mode(converted.latent, converted.texture, converted.static)


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12))


def _frame(name: str) -> torch.Tensor:
    from PIL import Image

    pixels = np.array(Image.open(ENCODERS / "dataset/images512x512" / name).convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_conversion_executes_nothing_and_loads_strictly(release, registry, tmp_path, monkeypatch):
    """Reading and converting the pickle never runs its embedded sources (the canary stays absent)."""
    from invertavatar_core.io.release_pickle import load_release_pickle, record_state_dict
    from invertavatar_encoders.release import convert_encoders

    canary = tmp_path / "CANARY"
    monkeypatch.setenv("IA_FIXTURE_CANARY", str(canary))
    data = load_release_pickle(ENCODERS / "fsinvertavatar_small.pkl")
    result = convert_encoders(data["G"], record_state_dict(data["G"]), FIXTURE_INFO, registry)
    assert not canary.exists()
    unused = {u.name.split(" ")[0] for u in result.unused}
    assert unused == {"latent_avg", "black_uv_bg", "generator.*"}
    assert result.aggregator["gate_order"] == "reset_update" and result.aggregator["update_weights"] == "candidate"
    assert result.texture.config.skip_first and result.texture.config.group_size == 4
    assert result.static.config.final_prelus == 2 and result.latent.config.fpn_align_corners
    # Every release tensor of the three encoders landed somewhere: counts match one to one.
    _, state = release
    ours = sum(len(m.state_dict()) for m in (result.latent, result.texture, result.static))
    theirs = sum(1 for k in state if k.startswith(("encoder.", "unet_encoder.")))
    assert ours == theirs


@pytest.mark.parametrize("variant", ["eval", "infer_sh"])
def test_latent_matches_release(converted, io, variant):
    """w+ and the e4e codes of frame 0 (AdaptiveAvgPool to 256, then E_latent, then + latent_avg)."""
    _set_mode(converted, variant)
    with torch.no_grad():
        codes = converted.latent(F.adaptive_avg_pool2d(_frame("A/00000000.png"), 256))
    assert _relative(codes, io[f"{variant}.codes"]) <= TOLERANCE[variant]
    assert _relative(codes + converted.latent_avg, io[f"{variant}.ws"]) <= TOLERANCE[variant]


def _stored(io, key: str) -> list[tuple[str, torch.Tensor]]:
    """``(slice kind, tensor)`` for a key stored in full, subsampled (``@sN``) and/or cropped."""
    return [
        (k.removeprefix(key), v) for k, v in io.items() if k == key or re.fullmatch(re.escape(key) + r"@(s\d+|crop)", k)
    ]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("variant", ["eval", "infer_sh"])
def test_texture_heads_read_the_release_gru_states(converted, io, variant, case):
    """E_tex offsets from the stored GRU states: up2 -> ToRGB-32 and x32, up3 -> x64, up4 -> x128."""
    _set_mode(converted, variant)
    heads = converted.texture.decoder.heads
    groups = sorted({k.split(".")[2] for k in io if k.startswith(f"{variant}.{case}.g")})
    for group in groups:
        prefix = f"{variant}.{case}.{group}"
        for index, (name, level) in enumerate((("rgb32", 1), ("x32", 1), ("x64", 2), ("x128", 3))):
            states = dict(_stored(io, f"{prefix}.gru_tex.{level}"))
            for kind, theirs in _stored(io, f"{prefix}.texture_offsets.{index}"):
                state = states["@crop"] if kind == "@crop" else _subsample(states, kind)
                with torch.no_grad():
                    ours = heads[name](state)
                assert _relative(ours, theirs) <= TOLERANCE[variant], (prefix, name, kind)


def _subsample(states: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """The state at the output's subsampling (``@s16`` from a stored ``@s8`` is every second sample)."""
    want = int(kind.removeprefix("@s"))
    for have_kind, value in states.items():
        if have_kind.startswith("@s") and want % int(have_kind.removeprefix("@s")) == 0:
            step = want // int(have_kind.removeprefix("@s"))
            return value[..., ::step, ::step]
    raise KeyError(kind)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("variant", ["eval", "infer_sh"])
def test_sft_heads_read_the_release_gru_states(converted, io, variant, case):
    """CS-SFT scale / shift from the stored E_tri GRU state crops (3x3 heads: compared where the crop suffices)."""
    _set_mode(converted, variant)
    decoder = converted.static.decoder
    groups = sorted({k.split(".")[2] for k in io if k.startswith(f"{variant}.{case}.g")})
    checked = 0
    for group in groups:
        prefix = f"{variant}.{case}.{group}"
        for resolution, level in ((16, 0), (32, 1), (64, 2), (128, 3), (256, 3)):
            state = io[f"{prefix}.gru_tri.{level}@crop"]
            start = _crop_start(level)
            with torch.no_grad():
                if resolution == 256:
                    state = decoder.tail(state)  # pixel shuffle, conv, PReLU, conv, PReLU
                    start *= 2
                pairs = [decoder.heads[f"x{resolution}_{part}"](state)[0] for part in ("scale", "shift")]
            ours = torch.stack(pairs)[:, None]
            margin = 4 if resolution == 256 else 2  # valid samples: two (or four) 3x3 convs in from the crop edge
            theirs, offset = _sft_window(io, f"{prefix}.sft.{resolution}")
            lo, hi = margin, ours.shape[-1] - margin
            window = theirs[..., start + lo - offset : start + hi - offset, start + lo - offset : start + hi - offset]
            assert window.shape[-1] == hi - lo, (prefix, resolution)
            assert _relative(ours[..., lo:hi, lo:hi], window) <= TOLERANCE[variant], (prefix, resolution)
            checked += 1
    assert checked == 5 * len(groups)


def _crop_start(level: int) -> int:
    """Where the stored GRU-state crop starts (the fixture's centred 8x8 windows)."""
    return {0: 4, 1: 12, 2: 28, 3: 60}[level]


def _sft_window(io, key: str) -> tuple[torch.Tensor, int]:
    """The SFT tensor in full (offset 0) or its centred crop and that crop's start."""
    if key in io:
        return io[key], 0
    crop = io[f"{key}@crop"]
    resolution = int(key.rsplit(".", 1)[1])
    return crop, resolution // 2 - crop.shape[-1] // 2


def test_release_inference_mode_differs_from_eval(converted, io):
    """The two module modes give different codes, each matching its own stored output (the mode matters)."""
    image = F.adaptive_avg_pool2d(_frame("A/00000000.png"), 256)
    with torch.no_grad():
        _set_mode(converted, "eval")
        evaluated = converted.latent(image)
        other = copy.deepcopy(converted)
        _set_mode(other, "infer_sh")
        inferred = other.latent(image)
    assert _relative(evaluated, inferred) > 1e-2
    assert _relative(inferred, io["infer_sh.codes"]) <= TOLERANCE["infer_sh"]


# ------------------------------------------------------------------------------ the whole E_tri chain

MEASURED: dict[str, float] = {}
"""Largest relative error per compared tensor of the last chain run (printed with ``-s``)."""


def _check(name: str, ours: torch.Tensor, io, key: str, variant: str) -> None:
    """Compare ``ours`` (full tensor) with every stored view of ``key``."""
    views = _stored(io, key)
    assert views, key
    for kind, theirs in views:
        if kind.startswith("@s"):
            step = int(kind.removeprefix("@s"))
            part = ours[..., ::step, ::step]
        elif kind == "@crop":
            r = ours.shape[-1]
            lo = r // 2 - theirs.shape[-1] // 2
            part = ours[..., lo : lo + theirs.shape[-1], lo : lo + theirs.shape[-1]]
        else:
            part = ours
        error = _relative(part, theirs)
        MEASURED[f"{key}{kind}"] = error
        assert error <= TOLERANCE[variant], (name, key, kind, error)


def _expression_uv(name: str) -> torch.Tensor:
    """The frame's UV render as the release's loader gives it: (u, v, mask thresholded at 0.5), channels first."""
    array = np.load(ENCODERS / "dataset/orthRender256x256_face_eye" / name.replace(".png", ".npy"))
    array = array[..., :3].astype(np.float32)
    array[..., 2] = array[..., 2] >= 0.5
    return torch.from_numpy(array).permute(2, 0, 1)


@pytest.fixture(scope="module")
def fixture_prior(release):
    """The pickle's own generator through the prior converter (the release's prior settings)."""
    convert = pytest.importorskip("invertavatar_prior_next3d.release.prior")
    record, _ = release
    return convert.convert_prior_record(record.children["generator"], "fixture:G.generator").prior.eval()


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("variant", ["eval", "infer_sh"])
def test_triplane_encoder_chain_matches_release(converted, fixture_prior, io, variant, case):
    """E_latent -> e4e renders per group -> E_tri (groups of 4, GRU state carried) -> SFT -> G_static.

    Inputs are the release's: the frame images, the residual Î - I of the e4e render (4 frames
    rendered together), both average-pooled to 256; every group restarts from the e4e features.
    """
    import json

    from invertavatar_core.inversion.pipeline import repeat_features
    from invertavatar_core.plugin.protocols import FeatureEdits
    from invertavatar_encoders.unet import frame_groups

    meta = json.loads((ENCODERS / "io.json").read_text())
    sources = sorted(dict.fromkeys(meta["cases"][f"{variant}.{case}"]["ref_fname_ls"]))
    groups = [[sources[i] for i in g] for g in frame_groups(len(sources), 4)]
    assert groups == meta["cases"][f"{variant}.{case}"]["groups"]
    _set_mode(converted, variant)
    static, prior = converted.static, fixture_prior
    with torch.no_grad():
        ws = converted.latent(F.adaptive_avg_pool2d(_frame("A/00000000.png"), 256)) + converted.latent_avg
        coarse = prior.canonical(ws)
        state = static.init_state(1)
        for index, names in enumerate(groups):
            prefix = f"{variant}.{case}.g{index}"
            images = torch.cat([_frame(n) for n in names])
            cameras = torch.tensor([meta["inputs"]["frames"][n]["label_c"][-25:] for n in names])
            render = prior.render(repeat_features(coarse, 4), torch.stack([_expression_uv(n) for n in names]), cameras)
            _check("e4e render", render.image, io, f"{prefix}.e4e_image", variant)
            residual = render.image - images  # the release's sign
            state = static.update_group(state, F.avg_pool2d(torch.cat([images, residual], 1), 2)[None])
            for level in range(4):
                _check("GRU state", state[f"level{level}.h"], io, f"{prefix}.gru_tri.{level}", variant)
            edits = static.read(state)
            for name, (scale, shift) in edits.static_sft.items():
                _check("CS-SFT", torch.stack([scale, shift]), io, f"{prefix}.sft.{name.removeprefix('x')}", variant)
            triplane = prior.canonical(ws, FeatureEdits(static_sft=edits.static_sft)).static["triplane"]
            _check("G_static with SFT", triplane, io, f"{prefix}.static_updated.5", variant)
    print({k: f"{v:.2e}" for k, v in MEASURED.items()})


# ------------------------------------------------------------------------------ the command


def test_convert_release_encoders_command(release, registry, tmp_path, monkeypatch, capsys):
    """``convert release-prior --key G.generator`` then ``convert release-encoders``: a loadable model checkpoint."""
    import json

    pytest.importorskip("invertavatar_prior_next3d.release.prior")
    from invertavatar_core.cli import main
    from invertavatar_core.inversion.models import InversionModels

    monkeypatch.setenv("IA_FIXTURE_CANARY", str(tmp_path / "CANARY"))
    pkl = str(ENCODERS / "fsinvertavatar_small.pkl")
    prior, out = tmp_path / "prior", tmp_path / "model"
    assert main(["convert", "release-prior", pkl, "--key", "G.generator", "--out", str(prior)]) == 0
    assert main(["convert", "release-encoders", pkl, "--prior", str(prior), "--out", str(out)]) == 0
    assert not (tmp_path / "CANARY").exists()
    report = json.loads((out / "conversion.json").read_text())
    assert report["latent_avg_minus_prior_w_avg_max_abs"] == 0.0
    assert {u["tensor"].split(" ")[0] for u in report["unused"]} == {"latent_avg", "black_uv_bg", "generator.*"}
    models = InversionModels.load(out, registry).eval()
    assert models.experiment.inverter.residual == "render_minus_image"
    assert models.experiment.aggregator.gate_order == "reset_update"
    # The loaded checkpoint's E_latent + the prior's w_avg is the release's w+.
    image = F.adaptive_avg_pool2d(_frame("A/00000000.png"), 256)
    with torch.no_grad():
        ws = models.latent(image) + models.prior.w_avg
    assert _relative(ws, _load_io()["eval.ws"]) <= TOLERANCE["eval"]
    # Nothing a user wrote is overwritten; a missing prior is named before any work.
    capsys.readouterr()
    assert main(["convert", "release-encoders", pkl, "--prior", str(prior), "--out", str(out)]) == 2
    assert "holds earlier output (run); pass --overwrite" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["convert", "release-encoders", pkl, "--prior", str(prior), "--out", str(mine), "--overwrite"]) == 2
    assert "holds files invertavatar did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
    assert main(["convert", "release-encoders", pkl, "--prior", str(prior), "--out", str(out), "--overwrite"]) == 0
    assert InversionModels.load(out, registry).experiment.inverter.residual == "render_minus_image"
    assert (
        main(["convert", "release-encoders", pkl, "--prior", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "--prior" in capsys.readouterr().err


def _load_io():
    from safetensors.torch import load_file

    return load_file(str(ENCODERS / "io.safetensors"))


@pytest.mark.slow
def test_converted_checkpoint_through_our_inverter(release, registry, tmp_path, monkeypatch):
    """The converted model checkpoint in ``IncrementalInverter`` on the 5 source frames: the release's CS-SFT.

    Exercises what the converter sets outside the encoders (the residual ``Î - I``; the session
    renders and folds the released groups [0, 2, 4, 1], [1, 3, 0, 2]) and the pipeline's own E_latent
    input (2x2 average pool, + the prior's w_avg).
    """
    import json

    from invertavatar_core.cli import main
    from invertavatar_core.inversion.inverters.incremental import IncrementalInverter
    from invertavatar_core.inversion.models import InversionModels
    from invertavatar_core.inversion.observation import Observation

    monkeypatch.setenv("IA_FIXTURE_CANARY", str(tmp_path / "CANARY"))
    pkl = str(ENCODERS / "fsinvertavatar_small.pkl")
    assert main(["convert", "release-prior", pkl, "--key", "G.generator", "--out", str(tmp_path / "prior")]) == 0
    out = tmp_path / "model"
    assert main(["convert", "release-encoders", pkl, "--prior", str(tmp_path / "prior"), "--out", str(out)]) == 0
    models = InversionModels.load(out, registry)
    inverter = IncrementalInverter(registry.validate_config("inverter", models.experiment.inverter), models)
    meta = json.loads((ENCODERS / "io.json").read_text())
    names = sorted(set(meta["cases"]["eval.f5"]["ref_fname_ls"]))
    unwraps = [
        np.load(ENCODERS / "dataset/uvRender256x256" / n.replace(".png", ".npy")).astype(np.float32) for n in names
    ]
    frames = Observation(
        image=torch.cat([_frame(n) for n in names]),
        camera=torch.tensor([meta["inputs"]["frames"][n]["label_c"][-25:] for n in names]),
        expression_uv=torch.stack([_expression_uv(n) for n in names]),
        unwrap_grid=torch.from_numpy(np.stack([u[..., :2] for u in unwraps])),
        visibility=torch.from_numpy(np.stack([u[..., 2] for u in unwraps]))[:, None],
    )
    session = inverter.start(frames)
    io = _load_io()
    with torch.no_grad():
        edits = session.edits()
    for name, (scale, shift) in edits.static_sft.items():
        _check("CS-SFT", torch.stack([scale, shift]), io, f"eval.f5.g1.sft.{name.removeprefix('x')}", "eval")
    assert session.frames == 5 and int(session.states["static"]["frames"][0]) == 8  # 2 groups of 4
