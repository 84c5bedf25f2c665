"""Tensor names and settings of the released few-shot encoders -> our E_latent, E_tex, E_tri.

The release's ``inversionNet`` holds ``encoder`` (e4e), ``unet_encoder.texture_unet`` (E_tex),
``unet_encoder.triplane_unet`` (E_tri), the embedded ``generator`` and two buffers. Its
encoder classes are not persistence classes, so the pickle records no constructor arguments for
them: widths come from tensor shapes, the remaining settings from the recorded module attributes
(activation slopes, FC gains, pool sizes, ``use_gru``) and from docs/release-weights.md
(concatenation order, frame grouping, GRU convention). The converted encoders are ours with the
release settings; their defaults stay the paper's.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from invertavatar_core.nn.ir_se import IR_SE_50, insightface_to_ir_se_keys
from invertavatar_core.plugin.protocols import PriorFeatureInfo
from invertavatar_core.plugin.registry import Registry
from invertavatar_encoders.e4e import E4EEncoder, E4EEncoderConfig
from invertavatar_encoders.presets import PRESETS
from invertavatar_encoders.texture_unet import TextureUNet, TextureUNetConfig
from invertavatar_encoders.triplane_sft_unet import TriplaneSFTUNet, TriplaneSFTUNetConfig

__all__ = [
    "RELEASE_AGGREGATOR",
    "RELEASE_INVERTER",
    "RELEASE_UNET_SETTINGS",
    "ConvertedEncoders",
    "UnusedTensor",
    "convert_encoders",
    "release_inference_mode",
]

RELEASE_AGGREGATOR: dict[str, Any] = {"name": "conv_gru", "gate_order": "reset_update", "update_weights": "candidate"}
"""The aggregator config under which our ConvGRU computes the release's (r first, z weights the candidate)."""
RELEASE_UNET_SETTINGS: dict[str, Any] = {"group_size": 4, "skip_first": True}
"""UNet settings of the release that its records do not show (docs/release-weights.md)."""
RELEASE_INVERTER: dict[str, Any] = {"residual": "render_minus_image"}
"""The released encoders were trained on the residual ``I_hat - I`` (docs/release-weights.md)."""

_LATENT, _TEXTURE, _STATIC = "encoder.", "unet_encoder.texture_unet.", "unet_encoder.triplane_unet."
_TRUNK_ROOTS = ("input_layer.", "body.")
_LATENT_TRUNK = tuple(_LATENT + root for root in _TRUNK_ROOTS)


@dataclass(frozen=True)
class UnusedTensor:
    """An official tensor the conversion leaves out, and why."""

    name: str
    reason: str


@dataclass
class ConvertedEncoders:
    """The three encoders with the release's weights, the aggregator config they need, and the leftovers."""

    latent: E4EEncoder
    texture: TextureUNet
    static: TriplaneSFTUNet
    aggregator: dict[str, Any]
    latent_avg: Tensor
    """The release's ``latent_avg`` ``(1, w_dim)``, the w+ base its encode adds (ours adds the prior's ``w_avg``)."""
    unused: list[UnusedTensor] = field(default_factory=list)


def convert_encoders(
    record: Any,
    state: Mapping[str, Tensor],
    prior_info: PriorFeatureInfo,
    registry: Registry,
    *,
    source: str = "G",
) -> ConvertedEncoders:
    """Build our encoders from the release's ``inversionNet`` record and its ``state_dict`` (strict load).

    Args:
        record: the ``G`` module record of the pickle (``ModuleRecord`` of the prior package's reader).
        state: its state dict, the release's names.
        prior_info: the converted prior's shapes (``num_ws``, ``w_dim``, feature levels).
        registry: builds the aggregators.
        source: what to call ``record`` in errors.
    """
    records = dict(_named(record))
    _expect(records, "", "inversionNet", source)
    for name in ("encoder", "unet_encoder.texture_unet", "unet_encoder.triplane_unet"):
        if name not in records:
            raise ValueError(f"{source}: no {name!r} module; a few-shot release snapshot holds e4e and both UNets")
    latent = _latent(records, state, prior_info, source)
    aggregator = _aggregator(records, source)
    texture_config = TextureUNetConfig(**_unet_settings(records, state, _TEXTURE, 7, source))
    static_config = TriplaneSFTUNetConfig(**_unet_settings(records, state, _STATIC, 6, source))
    agg = None if aggregator is None else registry.validate_config("aggregator", aggregator)
    texture = TextureUNet(texture_config, prior_info=prior_info, aggregator=agg, registry=registry)
    static = TriplaneSFTUNet(static_config, prior_info=prior_info, aggregator=agg, registry=registry)
    texture_names = [level.name for level in prior_info.texture_levels]
    _load(texture, _unet_keys(state, _TEXTURE, texture, texture_names), f"{source}.{_TEXTURE[:-1]}")
    _load(static, _unet_keys(state, _STATIC, static, texture_names), f"{source}.{_STATIC[:-1]}")
    if "latent_avg" not in state:
        raise ValueError(f"{source}: no 'latent_avg' buffer (the w+ base of the release's encode)")
    unused = [
        UnusedTensor("latent_avg", "the w+ base; equal to the prior's w_avg in the release, which our pipeline adds"),
        UnusedTensor("black_uv_bg", "a constant -1 UV background of the release's training code, not a weight"),
    ]
    generator = sorted(k for k in state if k.startswith("generator."))
    if generator:
        unused.append(
            UnusedTensor(
                f"generator.* ({len(generator)} tensors)",
                "the embedded animatable GAN: the prior, converted by `invertavatar convert release-prior`",
            )
        )
    known = ("encoder.", "unet_encoder.", "generator.", "latent_avg", "black_uv_bg")
    leftover = sorted(k for k in state if not k.startswith(known))
    if leftover:
        raise ValueError(f"{source}: tensors this converter does not know: {leftover[:8]}")
    return ConvertedEncoders(
        latent=latent,
        texture=texture,
        static=static,
        aggregator=aggregator or {},
        latent_avg=state["latent_avg"].detach().clone(),
        unused=unused,
    )


def release_inference_mode(latent: nn.Module, *unets: nn.Module) -> None:
    """Set the module modes the release's ``--reload_modules True`` inference leaves (docs/release-weights.md).

    E_latent in training mode (its BatchNorms normalise with the statistics of the one input
    image); each UNet in training mode except its trunk (decoder BatchNorms use the group's
    statistics). No layer here draws random numbers, so outputs stay deterministic.
    """
    latent.train()
    for unet in unets:
        unet.train()
        unet.trunk.eval()


# ------------------------------------------------------------------------------------------ records


def _named(record: Any, prefix: str = ""):
    yield prefix.removesuffix("."), record
    for name, child in record.children.items():
        if child is not None:
            yield from _named(child, f"{prefix}{name}.")


def _expect(records: Mapping[str, Any], name: str, class_name: str, source: str) -> Any:
    record = records.get(name)
    if record is None or record.class_name != class_name:
        found = "nothing" if record is None else record.qualname
        raise ValueError(f"{source}.{name or '<root>'}: expected a {class_name}, found {found}")
    return record


def _attribute(records: Mapping[str, Any], name: str, attribute: str, expected: Any, source: str) -> None:
    value = records[name].attributes.get(attribute)
    if value != expected:
        raise ValueError(
            f"{source}.{name}.{attribute} = {value!r}; this converter reproduces the release with {expected!r}"
        )


def _shape(state: Mapping[str, Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"{source}: missing tensor {key!r}")
    return tuple(state[key].shape)


# ------------------------------------------------------------------------------------------ E_latent


def _trunk_channels(state: Mapping[str, Tensor], prefix: str, source: str) -> tuple[int, ...]:
    """(stem, stage widths) of an IR-SE-50 trunk from its tensor shapes; the unit counts must be IR-SE-50's."""
    units = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"body\.(\d+)\.", k))})
    if units != list(range(sum(IR_SE_50.stage_units))):
        raise ValueError(
            f"{source}: {prefix}body has units {units[:3]}...{units[-3:]} ({len(units)}); "
            f"IR-SE-50 has {sum(IR_SE_50.stage_units)}"
        )
    stem = _shape(state, f"{prefix}input_layer.0.weight", source)[0]
    widths, first = [], 0
    for count in IR_SE_50.stage_units:
        widths.append(_shape(state, f"{prefix}body.{first}.res_layer.1.weight", source)[0])
        first += count
    return (stem, *widths)


def _preset_override(channels: tuple[int, ...]) -> tuple[int, ...] | None:
    paper = PRESETS["paper"].trunk
    return None if channels == (paper.stem_channels, *paper.stage_channels) else channels


def _latent(
    records: Mapping[str, Any], state: Mapping[str, Tensor], prior_info: PriorFeatureInfo, source: str
) -> E4EEncoder:
    e4e = _expect(records, "encoder", "Encoder4Editing", source)
    count, coarse, middle = (e4e.attributes.get(k) for k in ("style_count", "coarse_ind", "middle_ind"))
    if count != prior_info.num_ws:
        raise ValueError(f"{source}.encoder.style_count = {count}; the prior has num_ws = {prior_info.num_ws}")
    pool = records.get("face_pool")
    if pool is None or tuple(pool.attributes.get("output_size", ())) != (256, 256):
        raise ValueError(f"{source}.face_pool: expected AdaptiveAvgPool2d(256) before e4e")
    slopes = {
        r.attributes.get("negative_slope")
        for n, r in records.items()
        if n.startswith("encoder.styles.") and r.class_name == "LeakyReLU"
    }
    if slopes != {0.01}:
        raise ValueError(f"{source}.encoder.styles: LeakyReLU slopes {sorted(slopes)}; ours is 0.01")
    channels = _trunk_channels(state, _LATENT, source)
    config = E4EEncoderConfig(
        preset="paper",
        input_resolution=256,
        coarse_styles=coarse,
        middle_styles=middle - coarse,
        fpn_align_corners=True,
        trunk_channels=_preset_override(channels),
    )
    module = E4EEncoder(config, prior_info=prior_info)
    tensors: dict[str, Tensor] = {}
    trunk = {k.removeprefix(_LATENT): v for k, v in state.items() if k.startswith(_LATENT_TRUNK)}
    tensors.update({f"trunk.{k}": v for k, v in insightface_to_ir_se_keys(trunk, IR_SE_50).items()})
    for key, value in state.items():
        if not key.startswith(_LATENT) or key.startswith(_LATENT_TRUNK):
            continue
        name = key.removeprefix(_LATENT)
        if name.startswith("latlayer1."):
            tensors["styles.lateral_middle." + name.removeprefix("latlayer1.")] = value
        elif name.startswith("latlayer2."):
            tensors["styles.lateral_fine." + name.removeprefix("latlayer2.")] = value
        elif match := re.match(r"styles\.(\d+)\.linear\.(weight|bias)$", name):
            fc = records[f"encoder.styles.{match.group(1)}.linear"]
            if fc.attributes.get("activation") != "linear":
                raise ValueError(f"{source}.encoder.styles.{match.group(1)}.linear: activation must be 'linear'")
            # A StyleGAN FC stores unscaled weights and applies its gains at run time.
            gain = fc.attributes["weight_gain" if match.group(2) == "weight" else "bias_gain"]
            tensors[f"styles.{name}"] = value * gain
        else:
            tensors[f"styles.{name}"] = value
    _load(module, tensors, f"{source}.encoder")
    return module


# ------------------------------------------------------------------------------------------ UNets


def _aggregator(records: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    uses = {records[n].attributes.get("use_gru") for n in ("unet_encoder.texture_unet", "unet_encoder.triplane_unet")}
    if uses == {False}:
        return None
    if uses != {True}:
        raise ValueError(f"{source}.unet_encoder: the two UNets disagree on use_gru ({sorted(uses)})")
    gate = records.get("unet_encoder.texture_unet.up1.conv_gru.ih.0")
    if gate is None:
        raise ValueError(f"{source}.unet_encoder.texture_unet.up1.conv_gru: missing though use_gru is True")
    kernel = gate.attributes.get("kernel_size", (3, 3))
    return {**RELEASE_AGGREGATOR, "kernel_size": int(kernel[0])}


def _unet_settings(
    records: Mapping[str, Any], state: Mapping[str, Tensor], prefix: str, inputs: int, source: str
) -> dict[str, Any]:
    name = prefix[:-1]
    _attribute(records, name, "res", 256, source)
    stem = _shape(state, f"{prefix}input_layer.0.weight", source)
    if stem[1] != inputs:
        raise ValueError(f"{source}.{name}.input_layer.0: takes {stem[1]} channels, expected {inputs}")
    block = f"{prefix}up1.conv.double_conv"
    count = sum(1 for n in records if re.fullmatch(re.escape(block) + r"\.\d+", n))
    kinds = [records[f"{block}.{i}"].class_name for i in range(count)]
    if kinds[:4] != ["BatchNorm2d", "Conv2d", "PReLU", "Conv2d"] or set(kinds[4:]) != {"PReLU"} or len(kinds) > 6:
        raise ValueError(f"{source}.{block}: layers {kinds} are not BN, conv, PReLU, conv, PReLU x1-2")
    for n, r in records.items():
        if (
            n.startswith(prefix + "condition_")
            and r.class_name == "LeakyReLU"
            and r.attributes["negative_slope"] != 0.2
        ):
            raise ValueError(f"{source}.{n}: LeakyReLU slope {r.attributes['negative_slope']}; ours is 0.2")
    decoder = tuple(_shape(state, f"{prefix}up{i}.conv.double_conv.1.weight", source)[0] for i in range(1, 5))
    paper = PRESETS["paper"]
    tail = state.get(f"{prefix}final_head.0.weight")
    settings: dict[str, Any] = {
        "preset": "paper",
        "input_resolution": 256,
        "trunk_channels": _preset_override(_trunk_channels(state, prefix, source)),
        "decoder_channels": None if decoder == paper.decoder_channels else decoder,
        "final_prelus": len(kinds) - 4,
        **RELEASE_UNET_SETTINGS,
    }
    if tail is not None and tail.shape[0] != paper.tail_channels:
        settings["tail_channels"] = int(tail.shape[0])
    return settings


_UNET_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], list[str]], str]]] = [
    (
        re.compile(r"up(\d)\.conv\.double_conv\.(\d+)\.(.+)"),
        lambda m, _: f"decoder.levels.{int(m[1]) - 1}.{m[2]}.{m[3]}",
    ),
    (re.compile(r"up(\d)\.conv_gru\.ih\.0\.(.+)"), lambda m, _: f"decoder.aggregators.{int(m[1]) - 1}.gates.{m[2]}"),
    (
        re.compile(r"up(\d)\.conv_gru\.hh\.0\.(.+)"),
        lambda m, _: f"decoder.aggregators.{int(m[1]) - 1}.candidate.{m[2]}",
    ),
    # The tail's pixel shuffle is layer 0 of ours and outside the release's final_head.
    (re.compile(r"final_head\.(\d+)\.(.+)"), lambda m, _: f"decoder.tail.{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"outconv(\d)\.(.+)"), lambda m, levels: f"decoder.heads.{levels[int(m[1])]}.{m[2]}"),
    (
        re.compile(r"condition_(scale|shift)(\d+)\.(\d+)\.(.+)"),
        lambda m, _: f"decoder.heads.x{m[2]}_{m[1]}.{m[3]}.{m[4]}",
    ),
]


def _unet_keys(
    state: Mapping[str, Tensor], prefix: str, module: nn.Module, texture_levels: list[str]
) -> dict[str, Tensor]:
    """The UNet's tensors under our names (unknown names pass through so the strict load names them)."""
    own = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    trunk = {k: v for k, v in own.items() if k.startswith(_TRUNK_ROOTS)}
    out = {f"trunk.{k}": v for k, v in insightface_to_ir_se_keys(trunk, IR_SE_50).items()}
    for key, value in own.items():
        if key.startswith(_TRUNK_ROOTS):
            continue
        for pattern, rename in _UNET_RULES:
            if match := pattern.fullmatch(key):
                out[rename(match, texture_levels)] = value
                break
        else:
            out[key] = value
    return out


def _load(module: nn.Module, tensors: Mapping[str, Tensor], source: str) -> None:
    """Strict load with one error naming every missing, unexpected and mis-shaped tensor."""
    expected = module.state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k}: release {tuple(v.shape)}, ours {tuple(expected[k].shape)}"
        for k, v in tensors.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if problems:
        raise ValueError(f"{source}: does not fit our encoder: " + "; ".join(problems[:12]))
    with torch.no_grad():
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
