"""Convert the authors' released animatable GAN (``ani3dgan512.pkl``) into a ``next3d`` checkpoint.

The snapshot holds ``G``, ``G_ema``, ``D``; the network to use is ``G_ema`` (the exponential
moving average the authors' scripts render with; ``G`` is the raw training copy and gives other
images). Its recorded constructor arguments fill :class:`Next3DPriorConfig`, with the release's
settings (:data:`RELEASE_SETTINGS`) where the release departs from the paper's text (see
docs/release-weights.md). Every tensor is renamed to ours; the ones we do not use are reported
with the reason.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from invertavatar_core.io.atomic import atomic_directory, check_output_dir
from invertavatar_core.io.checkpoints import COMPONENT_KIND, CONFIG_FILE, WEIGHTS_FILE, save_component
from invertavatar_core.io.release_pickle import ModuleRecord, load_release_pickle, record_state_dict
from invertavatar_prior_next3d.next3d import Next3DPrior, Next3DPriorConfig

__all__ = [
    "CONVERSION_REPORT",
    "RELEASE_SETTINGS",
    "PriorConversion",
    "convert_prior_record",
    "convert_release_prior",
    "initialise_from_eg3d",
    "is_eg3d",
    "prior_config_from_record",
]

CONVERSION_REPORT = "conversion.json"
"""Written beside the checkpoint: source, settings, and every official tensor not used with the reason."""

RELEASE_SETTINGS: dict[str, Any] = {
    "face_condition_order": "after_torgb",
    "texture_sampling": "full_uv",
    "ray_pixel_offset": 0.0,
    "ray_range": "batch_mean",
    "importance_pdf": "midpoints",
}
"""Settings with which our prior computes what the release computes (docs/release-weights.md)."""

_NETWORKS = {
    "texture_backbone": "texture_generator",
    "backbone": "static_generator",
    "face_backbone": "face_module.synthesis",
}
_FIXED = {
    "backbone.mapping.w_avg": "mapping_network.w_avg",
    "decoder.net.0.weight": "renderer.decoder.hidden.weight",
    "decoder.net.0.bias": "renderer.decoder.hidden.bias",
    "decoder.net.2.weight": "renderer.decoder.out.weight",
    "decoder.net.2.bias": "renderer.decoder.out.bias",
}
_SYNTHESIS = re.compile(r"(texture_backbone|backbone|face_backbone)\.synthesis\.b(\d+)\.(.+)")
_MAPPING = re.compile(r"backbone\.mapping\.(embed|fc(\d+))\.(weight|bias)")
_SUPERRES = re.compile(r"superresolution\.block(\d+)\.(.+)")


@dataclass
class PriorConversion:
    """A converted prior: the module, its config, and what happened to every official tensor."""

    prior: Next3DPrior
    config: Next3DPriorConfig
    mapping: dict[str, str] = field(default_factory=dict)
    """Official name -> our name, for every tensor used."""
    unused: dict[str, str] = field(default_factory=dict)
    """Official name -> why it is not used."""
    random: list[str] = field(default_factory=list)
    """Our tensors the source has nothing for, left at their (seeded) initial values (EG3D initialisation)."""

    def report(self, shown: int = 4) -> str:
        """Human-readable summary: counts, then the unused tensors grouped by reason (``shown`` names each)."""
        lines = [f"used {len(self.mapping)} official tensors; {len(self.unused)} not used:"]
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.unused.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
            lines.append(f"  {len(names)} x {reason}: {', '.join(names[:shown])}{more}")
        if self.random:
            modules = sorted({name.split(".")[0] for name in self.random})
            lines.append(f"{len(self.random)} of our tensors initialised randomly (not in the source): {modules}")
        return "\n".join(lines)


def _our_synthesis_name(prior: Next3DPrior, network: str, resolution: int, rest: str) -> str | None:
    ours = _NETWORKS[network]
    synthesis = prior.get_submodule(ours)
    names = [b.spec.name for b in synthesis.blocks]
    # Blocks are named by nominal resolution; the release's 256-resolution ladders are nominal too.
    if str(resolution) not in names:
        return None
    return f"{ours}.blocks.{names.index(str(resolution))}.{rest}"


def _map_name(prior: Next3DPrior, name: str) -> tuple[str | None, str]:
    """Our name for an official tensor, or ``(None, reason)``."""
    if name.endswith("resample_filter"):
        return None, "resample filter (the fixed [1, 3, 3, 1] kernel is built in)"
    if name in _FIXED:
        return _FIXED[name], ""
    if m := _SYNTHESIS.fullmatch(name):
        network, resolution, rest = m.group(1), int(m.group(2)), m.group(3)
        ours = _our_synthesis_name(prior, network, resolution, rest)
        if ours is None:
            return None, f"pruned layer: {network} block {resolution} is never read (G_tex stops at 128)"
        return ours, ""
    if m := _MAPPING.fullmatch(name):
        layer = "embed" if m.group(1) == "embed" else f"layers.{m.group(2)}"
        return f"mapping_network.{layer}.{m.group(3)}", ""
    if name.startswith(("texture_backbone.mapping.", "face_backbone.mapping.")):
        return None, "duplicate mapping network (only backbone.mapping drives all three synthesis networks)"
    if m := _SUPERRES.fullmatch(name):
        rest = m.group(2)
        if rest.endswith(("noise_const", "noise_strength")):
            return None, "super-resolution noise (the release renders with noise mode 'none')"
        return f"superresolution.blocks.{m.group(1)}.{rest}", ""
    return None, "not part of the generator we build"


def _check_supported(record: ModuleRecord, kwargs: Mapping[str, Any], source: str) -> None:
    rendering = kwargs.get("rendering_kwargs") or {}
    problems = []
    if kwargs.get("c_dim") != 25:
        problems.append(f"c_dim {kwargs.get('c_dim')} (expected 25)")
    # Expression / landmark conditioning of the mapping is a variant the released prior does not use.
    for key, expected in (
        ("c_gen_conditioning_zero", False),
        ("c_scale", 1),
        ("gen_exp_cond", False),
        ("gen_lms_cond", False),
    ):
        if key in rendering and rendering[key] != expected:
            problems.append(f"rendering_kwargs.{key} {rendering[key]!r} (expected {expected!r})")
    if rendering.get("disparity_space_sampling"):
        problems.append("rendering_kwargs.disparity_space_sampling true (expected false)")
    if rendering.get("clamp_mode", "softplus") != "softplus":
        problems.append(f"rendering_kwargs.clamp_mode {rendering['clamp_mode']!r} (expected 'softplus')")
    if problems:
        raise ValueError(f"{source}: {record.class_name} init_kwargs not supported: {'; '.join(problems)}")


def prior_config_from_record(
    record: ModuleRecord, source: str = "<pickle>", *, settings: Mapping[str, Any] = RELEASE_SETTINGS
) -> Next3DPriorConfig:
    """Our config from the generator record's constructor arguments and tensor shapes, plus ``settings``."""
    kwargs = record.init_kwargs
    if record.class_name != "TriPlaneGenerator":
        raise ValueError(f"{source}: the generator is a {record.class_name}, expected a TriPlaneGenerator")
    missing = [
        k for k in ("c_dim", "z_dim", "w_dim", "channel_base", "channel_max", "rendering_kwargs") if k not in kwargs
    ]
    if missing:
        raise ValueError(f"{source}: the generator's init_kwargs lack {missing}")
    _check_supported(record, kwargs, source)
    state = record_state_dict(record)
    rendering = kwargs["rendering_kwargs"]
    sr_blocks = sorted(k for k in state if re.fullmatch(r"superresolution\.block\d+\.conv1\.bias", k))
    plane_rgb = state["backbone.synthesis.b4.torgb.bias"].shape[0]
    backbone = record.children["backbone"].children["synthesis"]
    sr_fp16 = int(kwargs.get("sr_num_fp16_res", 0)) > 0
    return Next3DPriorConfig(
        z_dim=int(kwargs["z_dim"]),
        w_dim=int(kwargs["w_dim"]),
        mapping_layers=int((kwargs.get("mapping_kwargs") or {}).get("num_layers", 8)),
        channel_base=int(kwargs["channel_base"]),
        channel_max=int(kwargs["channel_max"]),
        plane_resolution=int(backbone.attributes["img_resolution"]),
        plane_channels=plane_rgb // 3,
        neural_resolution=int(record.attributes.get("neural_rendering_resolution", 128)),
        image_resolution=int(kwargs.get("img_resolution", 512)),
        superresolution_channels=tuple(int(state[k].shape[0]) for k in sr_blocks),
        decoder_hidden=int(state["decoder.net.0.weight"].shape[0]),
        samples_per_ray=int(rendering["depth_resolution"]),
        importance_samples_per_ray=int(rendering["depth_resolution_importance"]),
        conv_clamp=kwargs.get("conv_clamp"),
        # The release's super-resolution clamps at 256 whenever it is allowed fp16 layers.
        superresolution_conv_clamp=256.0 if sr_fp16 else kwargs.get("conv_clamp"),
        box_size=float(rendering.get("box_warp", 1.0)),
        **settings,
    )


def convert_prior_record(record: ModuleRecord, source: str = "<pickle>") -> PriorConversion:
    """Build our prior from a ``TriPlaneGenerator`` record and load every tensor it uses."""
    config = prior_config_from_record(record, source)
    prior = Next3DPrior(config).eval()
    ours = prior.state_dict()
    conversion = PriorConversion(prior=prior, config=config)
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in record_state_dict(record).items():
        target, reason = _map_name(prior, name)
        if target is None:
            conversion.unused[name] = reason
            continue
        if target not in ours and ".torgb." in target:
            conversion.unused[name] = "pruned layer: a ToRGB whose image is never read (G_tex's skip image stops at 32)"
            continue
        if target not in ours:
            raise ValueError(f"{source}: official tensor {name} maps to {target}, which our prior does not have")
        if target in loaded:
            raise ValueError(f"{source}: official tensors map twice to {target}")
        if tuple(tensor.shape) != tuple(ours[target].shape):
            raise ValueError(
                f"{source}: official tensor {name} has shape {tuple(tensor.shape)}, our {target} "
                f"{tuple(ours[target].shape)}"
            )
        loaded[target] = tensor.to(ours[target].dtype)
        conversion.mapping[name] = target
    missing = sorted(set(ours) - set(loaded))
    if missing:
        raise ValueError(f"{source}: no official tensor for {len(missing)} of ours, e.g. {missing[:5]}")
    prior.load_state_dict(loaded, strict=True)
    return conversion


def is_eg3d(record: ModuleRecord) -> bool:
    """Whether a ``TriPlaneGenerator`` record is EG3D's (one backbone, no texture / face networks)."""
    return "backbone" in record.children and "texture_backbone" not in record.children


def initialise_from_eg3d(record: ModuleRecord, source: str = "<pickle>", *, seed: int = 0) -> PriorConversion:
    """Our prior with G_static, the mapping, the decoder and SR taken from an EG3D generator, by shape.

    The paper trains its prior from EG3D (supplement 6.1). Our defaults are kept (no release
    settings: this starts training, it does not reproduce a release). Tensors whose shapes differ
    are reported and left at the seeded initial values, as are G_tex and G_face.
    """
    config = prior_config_from_record(record, source, settings={})
    torch.manual_seed(seed)
    prior = Next3DPrior(config).eval()
    ours = prior.state_dict()
    conversion = PriorConversion(prior=prior, config=config)
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in record_state_dict(record).items():
        target, reason = _map_name(prior, name)
        if target is None or target not in ours:
            conversion.unused[name] = reason or "not part of the generator we build"
        elif tuple(tensor.shape) != tuple(ours[target].shape):
            conversion.unused[name] = f"shape differs from ours ({target})"
        else:
            loaded[target] = tensor.to(ours[target].dtype)
            conversion.mapping[name] = target
    prior.load_state_dict({**ours, **loaded}, strict=True)
    conversion.random = [name for name in ours if name not in loaded]
    return conversion


def _select(data: Any, key: str, source: Path) -> ModuleRecord:
    """``data[key]``, following dotted children (``G.generator`` in a few-shot snapshot)."""
    head, *rest = key.split(".")
    if not isinstance(data, Mapping) or head not in data:
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{source}: field {head!r} missing (found {keys}); expected a release GAN snapshot")
    record = data[head]
    for part in rest:
        child = record.children.get(part) if isinstance(record, ModuleRecord) else None
        if child is None:
            raise ValueError(f"{source}: {key}: no submodule {part!r}")
        record = child
    if not isinstance(record, ModuleRecord):
        raise ValueError(f"{source}: {key} is a {type(record).__name__}, expected a pickled generator")
    return record


def convert_release_prior(
    pickle_path: str | Path, out: str | Path, *, key: str = "G_ema", seed: int = 0, overwrite: bool = False
) -> PriorConversion:
    """Read ``pickle_path`` safely, convert its ``key`` generator, write our checkpoint and the report to ``out``.

    An EG3D generator (:func:`is_eg3d`) initialises a prior instead (:func:`initialise_from_eg3d`,
    ``seed`` for the parts EG3D lacks). ``out`` gets ``config.json`` + ``model.safetensors`` (a
    ``next3d`` prior component) and :data:`CONVERSION_REPORT`; it must be new or empty, or, with
    ``overwrite``, a prior component invertavatar wrote (anything else is refused before any work).
    """
    pickle_path, out = Path(pickle_path), Path(out)
    if not pickle_path.is_file():
        raise FileNotFoundError(f"{pickle_path}: no such file (the released ani3dgan512.pkl)")
    signature = (CONFIG_FILE, WEIGHTS_FILE)
    out = check_output_dir(out, COMPONENT_KIND, overwrite=overwrite, signature=signature)
    record = _select(load_release_pickle(pickle_path), key, pickle_path)
    eg3d = is_eg3d(record)
    if eg3d:
        conversion = initialise_from_eg3d(record, f"{pickle_path}:{key}", seed=seed)
    else:
        conversion = convert_prior_record(record, f"{pickle_path}:{key}")
    report = {
        "source": str(pickle_path),
        "key": key,
        "mode": "eg3d-initialisation" if eg3d else "release",
        "class": record.class_name,
        "init_kwargs": _jsonable(record.init_kwargs),
        "release_settings": {} if eg3d else RELEASE_SETTINGS,
        "used": len(conversion.mapping),
        "unused": [{"tensor": name, "reason": reason} for name, reason in conversion.unused.items()],
        "initialised_randomly": conversion.random,
    }
    with atomic_directory(out, COMPONENT_KIND, signature=signature) as tmp:
        save_component(conversion.prior, conversion.config, tmp)
        (tmp / CONVERSION_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return conversion


def _jsonable(value: Any) -> Any:
    """Recorded constructor arguments as JSON (numpy scalars to numbers, anything else to its repr)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return repr(value)
