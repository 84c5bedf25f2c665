"""Conformance tests a plugin author subclasses (langchain-tests style), one base class per kind.

Example, in a third-party test module::

    from invertavatar_core.testing import AggregatorConformance

    class TestMyAggregator(AggregatorConformance):
        name = "acme_conv_lstm"
        overrides = {"hidden": 8}

Every standard test builds the component from its registered tiny config (plus ``overrides``)
and checks the protocol's shapes, finiteness, gradients, config JSON round-trip and safetensors
round-trip; aggregators also that their streaming state saves with safetensors (no two names
sharing storage), stays finite over a long stream (>= 16 frames) and is never changed in place
by ``update``. A subclass must not silently replace a standard test: overriding one without
marking it ``xfail(reason=...)`` fails ``test_no_overrides_DO_NOT_OVERRIDE``.
"""

import math
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from invertavatar_core.io.checkpoints import load_component, save_component
from invertavatar_core.plugin.kinds import ComponentConfig
from invertavatar_core.plugin.manager import get_plugin_manager
from invertavatar_core.plugin.protocols import (
    Aggregator,
    CanonicalFeatures,
    FeatureEdits,
    FeatureEncoder,
    Fragments,
    LatentEncoder,
    Metric,
    MorphableModel,
    Prior,
    PriorFeatureInfo,
    Rasterizer,
)
from invertavatar_core.plugin.registry import Registry, build_registry
from invertavatar_core.testing.inputs import example_camera, example_expression_uv

__all__ = [
    "AggregatorConformance",
    "ComponentConformance",
    "EncoderConformance",
    "MetricConformance",
    "MorphableModelConformance",
    "PriorConformance",
    "RasterizerConformance",
]


def _assert_finite(tensor: Tensor, what: str) -> None:
    assert torch.isfinite(tensor).all(), f"{what} has NaN or inf values"


def _assert_grads_reach(module: nn.Module, what: str) -> None:
    """Every trainable parameter received a finite, non-zero-everywhere gradient."""
    missing = [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"{what}: no gradient reached {missing}"
    for n, p in module.named_parameters():
        if p.grad is not None:
            _assert_finite(p.grad, f"{what} gradient of {n}")


class ComponentConformance:
    """Shared fixtures and tests; subclasses set ``name`` and optionally ``overrides``."""

    kind: ClassVar[str]
    name: ClassVar[str]
    """Registry name under test."""
    overrides: ClassVar[dict[str, Any]] = {}
    """Config overrides on top of the registered tiny config."""

    @pytest.fixture(scope="class")
    @classmethod
    def registry(cls) -> Registry:
        """Every installed plugin (override to register an unpackaged plugin module)."""
        return build_registry(get_plugin_manager(autoload=True))

    @pytest.fixture
    def config(self, registry: Registry) -> ComponentConfig:
        """The tiny config of the component under test."""
        return registry.tiny_config(self.kind, self.name, **self.overrides)

    def build_context(self, registry: Registry) -> dict[str, Any]:
        """What the factory receives besides the config (see ``components.KINDS``)."""
        return {}

    @pytest.fixture
    def component(self, registry: Registry, config: ComponentConfig) -> Any:
        """The component built from ``config`` in eval mode (skipped when an optional import is missing)."""
        try:
            built = registry.create(self.kind, config, **self.build_context(registry))
        except (ImportError, FileNotFoundError) as exc:  # an optional package or a user-supplied data file
            pytest.skip(f"{self.kind} {self.name!r} cannot be built here: {exc}")
        if isinstance(built, nn.Module):
            built.eval()
        return built

    def test_config_json_round_trip(self, registry: Registry, config: ComponentConfig) -> None:
        """The config dumps to JSON and validates back to an equal object."""
        again = registry.validate_config(self.kind, config.model_dump(mode="json"))
        assert again == config
        assert type(again) is type(config)

    def test_config_schema(self, registry: Registry) -> None:
        """The config class documents every field (attribute docstrings become descriptions)."""
        schema = registry.config_cls(self.kind, self.name).model_json_schema()
        undocumented = [f for f, s in schema["properties"].items() if f != "name" and not s.get("description")]
        assert not undocumented, f"{self.kind} {self.name!r}: fields without a docstring: {undocumented}"

    def test_no_overrides_DO_NOT_OVERRIDE(self) -> None:  # noqa: N802 - the name is the message
        """Standard tests may only be replaced when marked xfail with a reason."""
        for base in type(self).__mro__:
            if base.__module__ != __name__:
                continue
            for attr, value in vars(base).items():
                if not attr.startswith("test_"):
                    continue
                mine = getattr(type(self), attr)
                if mine is value or getattr(mine, "__func__", mine) is value:
                    continue
                marks = [m.name for m in getattr(mine, "pytestmark", [])]
                assert "xfail" in marks, f"{type(self).__name__}.{attr} overrides a standard test without xfail"


class _ModuleRoundTrip:
    """Safetensors round-trip for components that are modules."""

    def outputs(self, component: Any, registry: Registry) -> list[Tensor]:
        """Deterministic outputs of ``component`` on fixed inputs (eval mode)."""
        raise NotImplementedError

    def test_safetensors_round_trip(
        self, component: Any, config: ComponentConfig, registry: Registry, tmp_path
    ) -> None:
        """Save to a component directory, load strictly, outputs are identical."""
        if not isinstance(component, nn.Module) or not list(component.state_dict()):
            pytest.skip("component has no tensors to save")
        with torch.no_grad():
            torch.manual_seed(0)
            before = self.outputs(component, registry)
        context = self.build_context(registry)
        save_component(component, config, tmp_path / "ckpt", context=context)
        loaded, loaded_config = load_component(tmp_path / "ckpt", registry, self.kind, **context)
        assert loaded_config == config
        loaded.eval()
        with torch.no_grad():
            torch.manual_seed(0)
            after = self.outputs(loaded, registry)
        for a, b in zip(before, after, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class AggregatorConformance(_ModuleRoundTrip, ComponentConformance):
    """Aggregators: streaming == sequence call, shapes, gradients, state is flat tensors."""

    kind = "aggregator"
    channels: ClassVar[int] = 6

    def build_context(self, registry: Registry) -> dict[str, Any]:
        """Aggregators are built for a channel count."""
        return {"channels": self.channels}

    def frames(self, t: int = 5) -> Tensor:
        """``(2, t, C, 5, 7)`` random frames (non-square to catch transposes)."""
        return torch.randn(2, t, self.channels, 5, 7, generator=torch.Generator().manual_seed(1))

    def outputs(self, component: Any, registry: Registry) -> list[Tensor]:
        """The fused map of five frames."""
        return [component(self.frames())]

    def test_protocol(self, component: Any) -> None:
        """Satisfies the Aggregator protocol."""
        assert isinstance(component, Aggregator)
        assert component.channels == self.channels

    def test_sequence_shape_and_finite(self, component: Any) -> None:
        """``(B, T, C, H, W) -> (B, C, H, W)`` with finite values, for T = 1 and T = 5."""
        for t in (1, 5):
            out = component(self.frames(t))
            assert out.shape == (2, self.channels, 5, 7)
            _assert_finite(out, "aggregated map")

    def test_streaming_equals_sequence(self, component: Any) -> None:
        """Folding ``update`` frame by frame reproduces the sequence call; state is flat tensors."""
        frames = self.frames(5)
        state = component.init_state(frames[:, 0])
        for t in range(frames.shape[1]):
            state = component.update(state, frames[:, t])
            assert isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values())
            assert component.read(state).shape == (2, self.channels, 5, 7)
        torch.testing.assert_close(component.read(state), component(frames))

    long_stream: ClassVar[int] = 24
    """Frames of the long-stream check (at least 16: NaN that only a long video reaches)."""

    def test_state_saves_with_safetensors(self, component: Any) -> None:
        """Every state (initial and after updates) saves with safetensors and reads back to the same map.

        Streaming sessions save the state between frames; safetensors refuses two names that share
        storage (``{"h": x, "h_prev": x}``) and non-contiguous tensors.
        """
        from safetensors.torch import load, save

        frames = self.frames(3)
        state = component.init_state(frames[:, 0])
        for t in range(frames.shape[1] + 1):
            storages: dict[int, str] = {}
            for key, value in state.items():
                if value.numel() == 0:
                    continue
                shared = storages.setdefault(value.untyped_storage().data_ptr(), key)
                assert shared == key, (
                    f"aggregator {self.name!r}: state entries {shared!r} and {key!r} share storage after {t} "
                    "update(s); safetensors cannot save that (streaming sessions must): clone one of them"
                )
            try:
                loaded = load(save(state))
            except Exception as exc:  # noqa: BLE001 - safetensors raises several types
                raise AssertionError(
                    f"aggregator {self.name!r}: the state after {t} update(s) cannot be saved with safetensors "
                    f"(streaming sessions must): {exc}"
                ) from None
            assert sorted(loaded) == sorted(state), f"aggregator {self.name!r}: state keys changed in a round trip"
            assert all(torch.equal(loaded[k], state[k]) for k in state), f"aggregator {self.name!r}: state changed"
            if t > 0:  # reading is valid after one frame
                torch.testing.assert_close(component.read(loaded), component.read(state), rtol=0, atol=0)
            if t < frames.shape[1]:
                state = component.update(state, frames[:, t])

    def test_long_stream_stays_finite(self, component: Any) -> None:
        """``long_stream`` (>= 16) updates: the state and the fused map are finite after every frame."""
        assert self.long_stream >= 16, "the long-stream check needs at least 16 frames"
        frames = self.frames(self.long_stream)
        with torch.no_grad():
            state = component.init_state(frames[:, 0])
            for t in range(frames.shape[1]):
                state = component.update(state, frames[:, t])
                for key, value in state.items():
                    if value.is_floating_point():
                        _assert_finite(value, f"aggregator {self.name!r}: state {key!r} after {t + 1} frames")
                _assert_finite(component.read(state), f"aggregator {self.name!r}: fused map after {t + 1} frames")

    def test_update_does_not_mutate_its_inputs(self, component: Any) -> None:
        """``update`` is pure: the state it was given and the frame are unchanged afterwards."""
        frames = self.frames(4)
        with torch.no_grad():
            state = component.init_state(frames[:, 0])
            for t in range(frames.shape[1]):
                frame = frames[:, t]
                before = {k: v.clone() for k, v in state.items()}
                frame_before = frame.clone()
                new_state = component.update(state, frame)
                assert sorted(state) == sorted(before), f"aggregator {self.name!r}: update changed its input's keys"
                changed = [k for k, v in state.items() if not torch.equal(v, before[k])]
                assert not changed, (
                    f"aggregator {self.name!r}: update (frame {t}) changed its input state in place: {changed}; "
                    "return new tensors instead (a caller may keep the old state, e.g. to branch or retry)"
                )
                assert torch.equal(frame, frame_before), f"aggregator {self.name!r}: update changed its input frame"
                state = new_state

    def test_batch_independence(self, component: Any) -> None:
        """Each sequence of the batch is aggregated independently."""
        frames = self.frames(3)
        together = component(frames)
        alone = component(frames[1:])
        torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-6)

    def test_gradients_reach_every_parameter(self, component: Any) -> None:
        """A loss on the output reaches every parameter and the input frames."""
        component.train()
        frames = self.frames(3).requires_grad_(True)
        component(frames).square().mean().backward()
        assert frames.grad is not None and frames.grad.abs().sum() > 0
        _assert_grads_reach(component, f"aggregator {self.name!r}")


class EncoderConformance(_ModuleRoundTrip, ComponentConformance):
    """Encoders against the tiny prior's feature info: shapes, streaming, gradients."""

    kind = "encoder"
    prior_name: ClassVar[str] = "next3d"
    """Prior whose tiny config defines the shapes the encoder must produce."""
    aggregator_name: ClassVar[str | None] = "mean"
    """Aggregator handed to feature encoders (None = one-shot)."""

    @pytest.fixture(scope="class")
    @classmethod
    def prior_info(cls, registry: Registry) -> PriorFeatureInfo:
        """The tiny prior's :class:`PriorFeatureInfo`."""
        if ("prior", cls.prior_name) not in registry:
            pytest.skip(f"prior {cls.prior_name!r} is not installed")
        return registry.create("prior", registry.tiny_config("prior", cls.prior_name)).info

    def build_context(self, registry: Registry) -> dict[str, Any]:
        """Prior info, aggregator config and registry."""
        if ("prior", self.prior_name) not in registry:
            pytest.skip(f"prior {self.prior_name!r} is not installed")
        info = registry.create("prior", registry.tiny_config("prior", self.prior_name)).info
        aggregator = None
        if self.aggregator_name is not None and ("aggregator", self.aggregator_name) in registry:
            aggregator = registry.tiny_config("aggregator", self.aggregator_name)
        return {"prior_info": info, "aggregator": aggregator, "registry": registry}

    def inputs(self, component: Any, t: int = 3) -> Tensor:
        """Random inputs: ``(2, C, R, R)`` for latent encoders, ``(2, t, C, R, R)`` otherwise."""
        g = torch.Generator().manual_seed(2)
        size = (component.input_channels, component.input_resolution, component.input_resolution)
        if isinstance(component, FeatureEncoder):
            return torch.rand(2, t, *size, generator=g) * 2 - 1
        return torch.rand(2, *size, generator=g) * 2 - 1

    def flat(self, output: Any) -> list[Tensor]:
        """Every tensor an encoder produced, in a fixed order."""
        if isinstance(output, Tensor):
            return [output]
        assert isinstance(output, FeatureEdits), f"expected FeatureEdits, got {type(output).__name__}"
        tensors = [output.texture_offsets[k] for k in sorted(output.texture_offsets)]
        for k in sorted(output.static_sft):
            tensors.extend(output.static_sft[k])
        if output.triplane_offset is not None:
            tensors.append(output.triplane_offset)
        return tensors

    def outputs(self, component: Any, registry: Registry) -> list[Tensor]:
        """Outputs on fixed inputs."""
        return self.flat(component(self.inputs(component)))

    def test_protocol_and_shapes(self, component: Any, prior_info: PriorFeatureInfo) -> None:
        """Latent: ``(B, K, D)``; feature encoders: edits at the prior's levels and shapes."""
        out = component(self.inputs(component))
        if isinstance(component, FeatureEncoder):
            assert component.role in ("texture", "static")
            levels = {lvl.name: lvl for lvl in prior_info.texture_levels}
            for key, value in out.texture_offsets.items():
                lvl = levels[key]
                assert value.shape == (2, lvl.channels, lvl.resolution, lvl.resolution), key
            sft = {lvl.name: lvl for lvl in prior_info.sft_levels}
            for key, (scale, shift) in out.static_sft.items():
                lvl = sft[key]
                assert scale.shape == shift.shape == (2, lvl.channels, lvl.resolution, lvl.resolution), key
            if out.triplane_offset is not None:
                r = prior_info.triplane_resolution
                assert out.triplane_offset.shape == (2, 3, prior_info.triplane_channels, r, r)
            assert self.flat(out), "a feature encoder must edit something"
        else:
            assert isinstance(component, LatentEncoder) and component.role == "latent"
            assert out.shape == (2, prior_info.num_ws, prior_info.w_dim)
        for tensor in self.flat(out):
            _assert_finite(tensor, f"encoder {self.name!r} output")

    def test_streaming_equals_sequence(self, component: Any) -> None:
        """For feature encoders, frame-by-frame updates reproduce the sequence call."""
        if not isinstance(component, FeatureEncoder):
            pytest.skip("latent encoders see one image")
        frames = self.inputs(component, t=3)
        state = component.init_state(2, device=frames.device, dtype=frames.dtype)
        for t in range(frames.shape[1]):
            state = component.update(state, frames[:, t])
            assert all(isinstance(v, Tensor) for v in state.values())
        for a, b in zip(self.flat(component.read(state)), self.flat(component(frames)), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    def test_gradients_reach_every_parameter(self, component: Any) -> None:
        """A loss on every output reaches every trainable parameter."""
        component.train()
        loss = sum(t.float().square().mean() for t in self.flat(component(self.inputs(component))))
        loss.backward()
        _assert_grads_reach(component, f"encoder {self.name!r}")


class PriorConformance(_ModuleRoundTrip, ComponentConformance):
    """Priors: mapping, canonical features, render shapes, caching, discriminator."""

    kind = "prior"

    def features(self, component: Any, batch: int = 2) -> CanonicalFeatures:
        """Canonical features of ``batch`` random latents."""
        info = component.info
        z = torch.randn(batch, info.z_dim, generator=torch.Generator().manual_seed(3))
        ws = component.mapping(z, example_camera(batch))
        return component.canonical(ws)

    def render(self, component: Any, features: CanonicalFeatures, batch: int = 2):
        """Render ``features`` at a frontal camera with a neutral expression UV render."""
        return component.render(
            features, example_expression_uv(batch, component.info.uv_resolution), example_camera(batch)
        )

    def outputs(self, component: Any, registry: Registry) -> list[Tensor]:
        """Final and raw images of a fixed sample."""
        out = self.render(component, self.features(component))
        return [out.image, out.raw, out.depth]

    def test_protocol_and_shapes(self, component: Any) -> None:
        """Every output has the shape ``info`` promises and finite values."""
        assert isinstance(component, Prior)
        info = component.info
        assert component.w_avg.shape == (info.w_dim,)
        features = self.features(component)
        assert features.ws.shape == (2, info.num_ws, info.w_dim)
        for level in info.texture_levels:
            assert features.texture[level.name].shape == (2, level.channels, level.resolution, level.resolution)
        r = info.triplane_resolution
        assert features.static["triplane"].shape == (2, 3 * info.triplane_channels, r, r)
        out = self.render(component, features)
        assert out.image.shape == (2, 3, info.image_resolution, info.image_resolution)
        assert out.raw.shape == (2, 3, info.neural_resolution, info.neural_resolution)
        assert out.depth.shape == (2, 1, info.neural_resolution, info.neural_resolution)
        assert out.triplane.shape == (2, 3, info.triplane_channels, r, r)
        for what in ("image", "raw", "depth", "feature_image"):
            _assert_finite(getattr(out, what), f"render.{what}")

    def test_one_avatar_broadcasts(self, component: Any) -> None:
        """Features of one avatar render a batch of frames like repeated features do."""
        one = self.features(component, batch=1)
        many = CanonicalFeatures.from_tensors({k: v.expand(2, *v.shape[1:]) for k, v in one.tensors().items()})
        torch.manual_seed(0)
        a = self.render(component, one).image
        torch.manual_seed(0)
        b = self.render(component, many).image
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    def test_gradients_reach_every_parameter(self, component: Any) -> None:
        """A loss on the render reaches every generator parameter."""
        component.train()
        out = self.render(component, self.features(component))
        (out.image.square().mean() + out.raw.square().mean()).backward()
        _assert_grads_reach(component, f"prior {self.name!r}")

    def test_discriminator(self, component: Any) -> None:
        """``build_discriminator`` scores renders, conditioned or not."""
        d = component.build_discriminator()
        out = self.render(component, self.features(component))
        for camera in (example_camera(2), None):
            logits = d(out.image, out.raw, camera)
            assert logits.shape == (2, 1)
            _assert_finite(logits, "discriminator logits")


class MorphableModelConformance(ComponentConformance):
    """Morphable models: shapes, index ranges, UV range, differentiability."""

    kind = "morphable_model"

    def test_protocol_and_shapes(self, component: Any) -> None:
        """Vertices ``(B, N, 3)``; faces, UVs, masks and landmarks consistent with N."""
        assert isinstance(component, MorphableModel)
        n = component.n_vertices
        faces = component.faces
        assert faces.ndim == 2 and faces.shape[1] == 3 and faces.dtype == torch.long
        assert int(faces.min()) >= 0 and int(faces.max()) < n
        uvs = component.uvs
        assert uvs.shape == (n, 2) and float(uvs.min()) >= 0 and float(uvs.max()) <= 1
        assert component.face_mask.shape == (n,)
        lm = component.landmark_indices
        assert lm.shape == (478,) and int(lm.min()) >= 0 and int(lm.max()) < n
        assert component.to_canonical.shape == (4, 4)
        assert len(component.expression_names) == component.n_expression

    def test_vertices_differentiable(self, component: Any) -> None:
        """Vertices respond to and differentiate through identity and expression."""
        identity = (0.5 * torch.randn(2, component.n_identity)).requires_grad_(True)
        expression = torch.rand(2, component.n_expression).requires_grad_(True)
        eyes = torch.zeros(2, component.n_eye) if component.n_eye else None
        verts = component.vertices(identity, expression, eyes)
        assert verts.shape == (2, component.n_vertices, 3)
        _assert_finite(verts, "vertices")
        verts.square().sum().backward()
        assert identity.grad is not None and identity.grad.abs().sum() > 0
        assert expression.grad is not None and expression.grad.abs().sum() > 0

    def test_neutral_inside_triplane_box(self, component: Any) -> None:
        """The neutral mesh placed in canonical space lies inside the tri-plane box."""
        verts = component.vertices(
            torch.zeros(1, component.n_identity),
            torch.zeros(1, component.n_expression),
            torch.zeros(1, component.n_eye) if component.n_eye else None,
        )
        m = component.to_canonical
        canonical = verts[0] @ m[:3, :3].T + m[:3, 3]
        face = canonical[component.face_mask > 0.5]
        assert face.abs().max() <= 0.5, "the face must lie inside the tri-plane box [-0.5, 0.5]^3"


class RasterizerConformance(ComponentConformance):
    """Rasterisers: a known triangle covers known pixels; interpolation is differentiable."""

    kind = "rasterizer"

    def test_known_triangle(self, component: Any) -> None:
        """A triangle over the top-left half of the frame covers exactly those pixel centres."""
        assert isinstance(component, Rasterizer)
        # The hypotenuse x + y = 0.02 passes between pixel centres, so no tie-breaking rule matters.
        verts = torch.tensor([[[-1.0, -1.0, 0.5, 1.0], [1.02, -1.0, 0.5, 1.0], [-1.0, 1.02, 0.5, 1.0]]])
        faces = torch.tensor([[0, 1, 2]])
        frags = component.rasterize(verts, faces, 8, 8)
        assert isinstance(frags, Fragments)
        assert frags.triangle_id.shape == (1, 8, 8) and frags.barycentrics.shape == (1, 8, 8, 3)
        i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        expected = (i + j) <= 7
        assert torch.equal(frags.mask[0], expected)
        bary = frags.barycentrics[0][expected]
        torch.testing.assert_close(bary.sum(-1), torch.ones(len(bary)))
        assert torch.isinf(frags.depth[0][~expected]).all()

    def test_interpolate_gradients(self, component: Any) -> None:
        """Interpolated attributes differentiate w.r.t. attributes and vertex positions."""
        verts = torch.tensor(
            [[[-0.9, -0.9, 0.5, 1.0], [0.9, -0.8, 0.5, 1.0], [-0.7, 0.9, 0.5, 1.0]]], requires_grad=True
        )
        faces = torch.tensor([[0, 1, 2]])
        attrs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]], requires_grad=True)
        frags = component.rasterize(verts, faces, 16, 16)
        out = component.interpolate(attrs, frags, faces)
        assert out.shape == (1, 16, 16, 2)
        (out[..., 0] * torch.linspace(0, 1, 16)).sum().backward()
        assert attrs.grad is not None and attrs.grad.abs().sum() > 0
        assert verts.grad is not None and verts.grad[..., :2].abs().sum() > 0


class MetricConformance(ComponentConformance):
    """Metrics: availability is reported; when available, identical inputs give a finite value."""

    kind = "metric"

    def test_protocol_and_availability(self, component: Any) -> None:
        """``available()`` is ``(bool, str)`` and says why when false."""
        assert isinstance(component, Metric)
        ok, reason = component.available()
        assert isinstance(ok, bool) and isinstance(reason, str)
        assert ok or reason, "an unavailable metric must say why"

    def test_update_compute_reset(self, component: Any) -> None:
        """Accumulating two batches gives a finite value; reset forgets them."""
        ok, reason = component.available()
        if not ok:
            pytest.skip(reason)
        g = torch.Generator().manual_seed(4)
        a = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
        b = (a + 0.1 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
        component.reset()
        component.update(a, b)
        component.update(b, a)
        first = component.compute()
        if isinstance(first, float) and math.isnan(first) and getattr(component, "count", None) == 0:
            # A detector-based metric (AKD) finds no face in noise: NaN over zero usable pairs is its answer.
            pytest.skip(f"{self.name}: no usable image pair in random noise (count == 0)")
        assert isinstance(first, float) and not math.isnan(first)
        component.reset()
        component.update(a, b)
        component.update(b, a)
        assert component.compute() == pytest.approx(first, rel=1e-5, abs=1e-6)
