"""The Next3D++ prior: paper-scale size and forward, the face window, caching, encoder edits, errors."""

import pytest
import torch

from invertavatar_core.geometry.triplane_space import face_window
from invertavatar_core.plugin.protocols import CanonicalFeatures, FeatureEdits, Prior
from invertavatar_core.testing.inputs import example_camera, example_expression_uv
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig

PAPER_GENERATOR_PARAMS = 88.3e6  # released generator, docs/design/prior.md


def _open_mouth(expression_uv: torch.Tensor) -> torch.Tensor:
    """The same face with an open mouth: a hole in the mask below the centre and shifted lower-face UVs."""
    out = expression_uv.clone()
    r = out.shape[-1]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    hole = (xs / 0.3) ** 2 + ((ys - 0.45) / 0.15) ** 2 < 1
    out[:, 2][:, hole] = 0
    out[:, :2][:, :, hole] = 0
    out[:, 1] = torch.where((ys > 0.45) & (out[:, 2] > 0), out[:, 1] - 0.1, out[:, 1])
    return out


def _assert_only_face_window_changed(a: torch.Tensor, b: torch.Tensor, resolution: int) -> None:
    """``a``, ``b``: (B, 3, C, R, R) tri-planes; planes 1-2 bit-identical, plane 0 differs only in the window."""
    assert torch.equal(a[:, 1:], b[:, 1:]), "planes 1 and 2 must not depend on the expression"
    w = face_window(resolution)
    inside = torch.zeros(resolution, resolution, dtype=torch.bool)
    inside[w.row0 : w.row1, w.col0 : w.col1] = True
    assert torch.equal(a[:, 0][..., ~inside], b[:, 0][..., ~inside]), "plane 0 changed outside the face window"
    assert not torch.allclose(a[:, 0][..., inside], b[:, 0][..., inside]), "the expression must change the face"


@pytest.mark.slow
def test_paper_preset_size_forward_and_face_window():
    torch.manual_seed(0)
    prior = Next3DPrior(Next3DPriorConfig()).eval()
    assert isinstance(prior, Prior)
    total = sum(p.numel() for p in prior.parameters())
    assert abs(total - PAPER_GENERATOR_PARAMS) <= 0.15 * PAPER_GENERATOR_PARAMS, total
    parts = {name: sum(p.numel() for p in m.parameters()) for name, m in prior.named_children()}
    # docs/design/prior.md: G_static 28.21 M, G_face 28.02 M, SR 1.65 M, mapping 0.80 M, decoder 4.3 K.
    assert parts["static_generator"] == pytest.approx(28.21e6, rel=0.01)
    assert parts["face_module"] == pytest.approx(28.02e6, rel=0.01)
    assert parts["superresolution"] == pytest.approx(1.65e6, rel=0.01)
    assert parts["mapping_network"] == pytest.approx(0.80e6, rel=0.01)
    assert parts["renderer"] == pytest.approx(4.3e3, rel=0.02)
    info = prior.info
    assert (info.num_ws, info.w_dim, info.uv_resolution, info.triplane_channels, info.triplane_resolution) == (
        14,
        512,
        256,
        32,
        256,
    )
    assert [(lv.name, lv.channels, lv.resolution) for lv in info.texture_levels] == [
        ("rgb32", 32, 32),
        ("x32", 512, 32),
        ("x64", 512, 64),
        ("x128", 256, 128),
    ]
    assert [(lv.name, lv.channels, lv.resolution) for lv in info.sft_levels] == [
        ("x16", 256, 16),
        ("x32", 256, 32),
        ("x64", 256, 64),
        ("x128", 128, 128),
        ("x256", 64, 256),
    ]
    camera = example_camera(1)
    neutral = example_expression_uv(1, 256)
    with torch.no_grad():
        features = prior.canonical(prior.mapping(torch.randn(1, 512), camera, truncation_psi=0.7))
        assert features.static["triplane"].shape == (1, 96, 256, 256)
        out = prior.render(features, neutral, camera)
        talking = prior.animate(features, _open_mouth(neutral))
    assert out.image.shape == (1, 3, 512, 512) and out.raw.shape == (1, 3, 128, 128)
    assert out.feature_image.shape == (1, 32, 128, 128) and out.depth.shape == (1, 1, 128, 128)
    for t in (out.image, out.feature_image, out.depth, out.triplane):
        assert torch.isfinite(t).all()
    assert 2.25 - 1e-4 <= float(out.depth.min()) and float(out.depth.max()) <= 3.3 + 1e-4
    assert float(out.image.std()) > 0.01  # not a constant image
    _assert_only_face_window_changed(out.triplane, talking, 256)
    static = features.static["triplane"].reshape(1, 3, 32, 256, 256)
    assert torch.equal(talking[:, 1:], static[:, 1:])


@pytest.fixture(scope="module")
def tiny() -> Next3DPrior:
    torch.manual_seed(0)
    return Next3DPrior(Next3DPriorConfig(preset="tiny")).eval()


def _features(prior: Next3DPrior, batch: int = 2, edits: FeatureEdits | None = None) -> CanonicalFeatures:
    z = torch.randn(batch, prior.info.z_dim, generator=torch.Generator().manual_seed(5))
    return prior.canonical(prior.mapping(z, example_camera(batch)), edits)


def test_tiny_expression_changes_only_plane_zero_in_the_face_window(tiny):
    features = _features(tiny)
    neutral = example_expression_uv(2, tiny.info.uv_resolution)
    with torch.no_grad():
        a, b = tiny.animate(features, neutral), tiny.animate(features, _open_mouth(neutral))
    _assert_only_face_window_changed(a, b, tiny.info.triplane_resolution)


def test_render_reuses_the_canonical_features(tiny):
    features = _features(tiny)
    calls = {"texture": 0, "static": 0, "face": 0}
    hooks = [
        tiny.texture_generator.register_forward_hook(lambda *_: calls.__setitem__("texture", calls["texture"] + 1)),
        tiny.static_generator.register_forward_hook(lambda *_: calls.__setitem__("static", calls["static"] + 1)),
        tiny.face_module.synthesis.register_forward_hook(lambda *_: calls.__setitem__("face", calls["face"] + 1)),
    ]
    try:
        with torch.no_grad():
            for _ in range(3):
                tiny.render(features, example_expression_uv(2, tiny.info.uv_resolution), example_camera(2))
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"texture": 0, "static": 0, "face": 3}


def test_encoder_edits_reach_the_right_features(tiny):
    info = tiny.info
    base = _features(tiny)
    g = torch.Generator().manual_seed(9)
    offsets = {
        lv.name: torch.randn(2, lv.channels, lv.resolution, lv.resolution, generator=g) for lv in info.texture_levels
    }
    edited = _features(tiny, edits=FeatureEdits(texture_offsets=offsets))
    for name, offset in offsets.items():
        torch.testing.assert_close(edited.texture[name], base.texture[name] + offset)
    assert torch.equal(edited.static["triplane"], base.static["triplane"])  # texture edits leave F_tri alone
    # Identity CS-SFT (scale 1, shift 0) is exact; a shift at one level changes the tri-plane.
    ones = {
        lv.name: (
            torch.ones(2, lv.channels, lv.resolution, lv.resolution),
            torch.zeros(2, lv.channels, lv.resolution, lv.resolution),
        )
        for lv in info.sft_levels
    }
    assert torch.equal(_features(tiny, edits=FeatureEdits(static_sft=ones)).static["triplane"], base.static["triplane"])
    lv = info.sft_levels[2]
    shifted = {
        lv.name: (
            torch.ones(2, lv.channels, lv.resolution, lv.resolution),
            torch.ones(2, lv.channels, lv.resolution, lv.resolution),
        )
    }
    assert not torch.allclose(
        _features(tiny, edits=FeatureEdits(static_sft=shifted)).static["triplane"], base.static["triplane"]
    )
    r, c = info.triplane_resolution, info.triplane_channels
    offset = torch.randn(2, 3, c, r, r, generator=g)
    moved = _features(tiny, edits=FeatureEdits(triplane_offset=offset))
    torch.testing.assert_close(moved.static["triplane"], base.static["triplane"] + offset.reshape(2, 3 * c, r, r))
    with pytest.raises(ValueError, match=r"unknown levels \['x999'\]"):
        _features(tiny, edits=FeatureEdits(texture_offsets={"x999": torch.zeros(2, 1, 1, 1)}))
    with pytest.raises(ValueError, match=r"CS-SFT 'x16' must be \(B, 8, 4, 4\)"):
        _features(tiny, edits=FeatureEdits(static_sft={"x16": (torch.ones(2, 8, 5, 5), torch.zeros(2, 8, 5, 5))}))


def test_mouth_interior_is_synthesised_by_the_face_module(tiny):
    module = tiny.face_module
    talking = _open_mouth(example_expression_uv(1, module.uv_resolution))
    face, full, condition = module.masks(talking)
    hole = (full - face).bool()
    assert hole.any(), "the open mouth must produce a mouth hole inside the face mask"
    # The full alpha covers the hole (G_face fills it); the condition alpha only its lower part.
    assert torch.equal(
        condition.bool() & ~face.bool(),
        hole & (torch.arange(module.uv_resolution).reshape(1, 1, -1, 1) >= round(87 / 256 * module.uv_resolution)),
    )


def test_bad_inputs_are_named(tiny, without_shape_checker):  # its own messages, which the checker would pre-empt
    features = _features(tiny)
    with pytest.raises(ValueError, match=r"expression_uv must be \(B, 3, 64, 64\)"):
        tiny.render(features, example_expression_uv(2, 32), example_camera(2))
    with pytest.raises(ValueError, match=r"ws \(B, 14, 32\)"):
        tiny.canonical(torch.zeros(2, 13, 32))
    with pytest.raises(ValueError, match="must hold 1 or 3"):
        tiny.render(features, example_expression_uv(3, 64), example_camera(3))
    with pytest.raises(ValueError, match="camera"):
        tiny.render(features, example_expression_uv(2, 64), torch.zeros(2, 16))


def test_config_overrides_and_validation():
    config = Next3DPriorConfig(preset="tiny", plane_channels=6, samples_per_ray=4, importance_samples_per_ray=0)
    sizes = config.sizes()
    assert (sizes.plane_channels, sizes.samples_per_ray, sizes.image_resolution) == (6, 4, 64)
    prior = Next3DPrior(config).eval()
    with torch.no_grad():
        out = prior.render(_features(prior, 1), example_expression_uv(1, 64), example_camera(1))
    assert out.feature_image.shape == (1, 6, 32, 32) and torch.isfinite(out.image).all()
    with pytest.raises(ValueError, match="doubled once per super-resolution stage"):
        Next3DPrior(Next3DPriorConfig(preset="tiny", image_resolution=128))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_render_is_finite_and_close(tiny, dtype):
    features = _features(tiny, batch=1)
    expression, camera = example_expression_uv(1, tiny.info.uv_resolution), example_camera(1)
    with torch.no_grad():
        reference = tiny.render(features, expression, camera)
        with torch.autocast("cpu", dtype=dtype):
            half = tiny.render(tiny.canonical(features.ws), expression, camera)
    for t in (half.image, half.feature_image, half.depth):
        assert torch.isfinite(t.float()).all()
    cos = torch.nn.functional.cosine_similarity(half.image.float().flatten(), reference.image.flatten(), dim=0)
    assert cos > 0.95
