"""Experiment configs: registry-dispatched component fields, sections, YAML/JSON files.

A component field (``prior``, ``aggregator``, ...) is typed with its kind's base config and
validated through the registry found in pydantic's validation context
(``ExperimentConfig.model_validate(data, context={"registry": registry})``), so a third-party
name validates exactly like ours and errors carry the path (``aggregator.hidden_channels``).
Without a context the registry of the installed plugins is built once per validation (no
process-wide cache: plugins installed or registered later are seen by the next validation).

Numbers from the paper live here, beside the paper's name for them.
"""

import json
import textwrap
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from invertavatar_core.plugin.kinds import KINDS, ComponentConfig
from invertavatar_core.plugin.registry import Registry, UnknownComponentError, build_registry

__all__ = [
    "ComponentField",
    "DataConfig",
    "EncodersConfig",
    "EvaluatedModel",
    "EvaluationConfig",
    "ExperimentConfig",
    "Section",
    "Stage1LossWeights",
    "Stage2LossWeights",
    "TrainingConfig",
    "default_registry",
    "dump_config",
    "load_config_data",
    "load_experiment",
    "commented_yaml",
    "registry_from_context",
]


_VALIDATION_SCOPE: ContextVar[list[Registry] | None] = ContextVar("invertavatar_validation_scope", default=None)
"""While a :class:`Section` validates without a registry in its context: the one built for it (or empty)."""


def default_registry() -> Registry:
    """A registry of the installed plugins, built afresh (callers that want one per process keep it)."""
    from invertavatar_core.plugin.manager import get_plugin_manager

    return build_registry(get_plugin_manager())


# pydantic's ValidationInfo and handlers are non-runtime Protocols: annotated as Any so that a
# runtime checker (the test suite's beartype) can wrap these functions.
def registry_from_context(info: Any) -> Registry:
    """The registry passed in ``info`` (pydantic's ValidationInfo or None), else :func:`default_registry`."""
    context = info.context if info is not None else None
    if isinstance(context, dict) and context.get("registry") is not None:
        return context["registry"]
    scope = _VALIDATION_SCOPE.get()
    if scope is None:
        return default_registry()
    if not scope:
        scope.append(default_registry())
    return scope[0]


def _dispatcher(kind: str):
    def validate(value: Any, handler: Any, info: Any) -> ComponentConfig:
        registry = registry_from_context(info)
        if isinstance(value, str):  # a bare name means that component's defaults
            value = {"name": value}
        try:
            return registry.validate_config(kind, value)
        except UnknownComponentError as exc:
            raise PydanticCustomError("unknown_component", "{message}", {"message": exc.message}) from None
        except TypeError as exc:
            raise PydanticCustomError("component_type", "{message}", {"message": str(exc)}) from None

    return WrapValidator(validate)


def ComponentField(kind: str) -> Any:  # noqa: N802 - reads like a type
    """The annotation of a registry-dispatched field of ``kind``."""
    base = KINDS[kind].config_base
    return Annotated[SerializeAsAny[base], _dispatcher(kind)]


def _named(name: str, **fields: Any):
    """A default factory producing ``{"name": name, **fields}`` (validated through the registry)."""
    return Field(default_factory=lambda: {"name": name, **fields}, validate_default=True)


class Section(BaseModel):
    """Base of the non-component sections: strict and frozen like component configs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _one_registry_per_validation(cls, data: Any, handler: Any) -> Any:
        # Every component field of one validation (nested sections included) shares one registry.
        if _VALIDATION_SCOPE.get() is not None:
            return handler(data)
        token = _VALIDATION_SCOPE.set([])
        try:
            return handler(data)
        finally:
            _VALIDATION_SCOPE.reset(token)


class EncodersConfig(Section):
    """The three encoders of the inversion pipeline (paper Fig. 2)."""

    latent: ComponentField("encoder") = _named("e4e")
    """Coarse stage E_latent: image -> w+."""
    texture: ComponentField("encoder") | None = _named("texture_unet")
    """Fine stage E_tex in UV space; ``null`` removes it (Table 3 ablation)."""
    static: ComponentField("encoder") | None = _named("triplane_sft_unet")
    """Fine stage E_tri; ``triplane_offset_unet`` is the offsets ablation, ``null`` removes it."""


class DataConfig(Section):
    """Where training / evaluation data comes from."""

    root: Path | None = None
    """Dataset folder in the layout ``invertavatar preprocess`` writes; ``null`` = synthetic from the prior."""
    image_resolution: int = 512
    """Resolution images are loaded at (paper: 512)."""
    frames_per_sequence: int = 4
    """Frames rendered and supervised per sequence and iteration (supplement 6.2.3: 4)."""
    supervised_frames: Literal["any", "last"] = "any"
    """Stage 3: which of a sequence's frames the folded avatar is rendered at. ``any``: drawn at random from
    the whole sequence (supplement 6.2.3, "randomly selecting 4 frames for rendering"), so the final avatar
    must still explain the early frames; ``last``: the last ``frames_per_sequence`` frames, which rewards
    forgetting (how the first CPU run of recipes/ was trained; docs/reproduction.md compares the two)."""
    max_sequence_length: int = 32
    """Frames cycled through the recurrent encoders per sequence (supplement 6.2.3: up to 32)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    synthetic_drives: int = 64
    """Drive sequences (cameras + expressions of the morphable model) rendered once for synthetic samples."""
    novel_views: int = 1
    """Extra views per synthetic identity supervised besides its source frames (multi-view supervision)."""
    unseen_frames: int = Field(default=0, ge=0)
    """Stage 3, real clips: other frames of the clip, never folded, at which the avatar is also rendered
    (the real clips' novel views; 0 = the paper's, only folded frames). Not in the paper: it asks what
    evaluation asks, whether the sources predict frames they did not show (docs/design/training.md)."""


class Stage1LossWeights(Section):
    """Loss weights of stage 1, E_latent (Eq. 2; w_delta from the released e4e config)."""

    l1: float = 1.0  # Eq. 2
    lpips: float = 0.5  # lambda_lpips, Eq. 2
    id: float = 0.25  # lambda_id, Eq. 2
    latent_adv: float = 1.0  # L_adv^{D_W}, Eq. 2
    w_delta: float = 1e-3  # e4e delta regulariser (docs/design/training.md)
    w_code: float = 0.0  # not in the paper: MSE to the known w+ of synthetic samples (docs/design/training.md)


class Stage2LossWeights(Section):
    """Loss weights of stages 2 and 3, E_tex / E_tri (Eq. 3)."""

    l1: float = 1.0  # Eq. 3
    lpips: float = 1.0  # lambda_lpips, Eq. 3
    tri: float = 1e-3  # lambda_tri, Eq. 3
    tex: float = 1e-3  # lambda_tex, Eq. 3
    raw: float = 1.0  # lambda_raw, Eq. 3
    adv: float = 0.1  # lambda_adv, Eq. 3


class TrainingConfig(Section):
    """Settings shared by every training stage."""

    out_dir: Path = Path("runs/experiment")
    """Run folder: resolved config, checkpoints, logs, sample grids."""
    steps: int = 1000
    """Optimiser steps."""
    batch_size: int = 4
    """Sequences (or images) per step, per process."""
    lr: float = 1e-4  # encoders, supplement 6.2.1-6.2.2
    """Encoder learning rate."""
    discriminator_lr: float = 1e-3  # supplement 6.2.2
    """Discriminator learning rate."""
    betas: tuple[float, float] = (0.5, 0.999)  # released encoder configs (docs/design/training.md)
    """Adam betas."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision."""
    checkpoint_every: int = 500
    """Steps between checkpoints (resume loses at most this many)."""
    log_every: int = 10
    """Steps between scalar log rows."""
    sample_every: int = 500
    """Steps between PNG sample grids."""
    adversarial: bool = False
    """Add the adversarial term (the paper fine-tunes with it after pre-training without)."""
    stage1_losses: Stage1LossWeights = Stage1LossWeights()
    stage2_losses: Stage2LossWeights = Stage2LossWeights()
    perceptual: ComponentField("metric") | None = _named("lpips")
    """Perceptual loss network (LPIPS needs user-supplied weights; ``ms_ssim`` is a fallback)."""
    perceptual_fallback: ComponentField("metric") | None = _named("ms_ssim")
    """Used (with a message) when ``perceptual`` cannot run here; ``null`` drops the term then."""
    id_weights: Path | None = None
    """ArcFace IR-SE-50 weights (``model_ir_se50.pth``) for the ID loss; ``null`` drops the term (with a message)."""
    prior_weights: Path | None = None
    """Component folder of the trained prior (``invertavatar train prior``); ``null`` = as its config builds it."""
    init_from: Path | None = None
    """Model checkpoint of the previous stage (stage 2: prior + E_latent of stage 1; stage 3: all of stage 2)."""
    latent_discriminator_lr: float = 1e-4  # supplement 6.2.1
    """Learning rate of the latent-code discriminator D_W (stage 1)."""
    r1_gamma: float = 1.0  # released encoder losses (docs/design/training.md); D_W uses the same R1 form
    """R1 penalty weight of the discriminators."""
    sample_truncation: float = 0.6  # released encoder configs (docs/design/training.md)
    """Truncation psi of synthetic training samples drawn from the prior."""
    real_w_truncation: float = 0.8  # released e4e stage (docs/design/training.md)
    """Truncation psi of the mapping-network codes D_W sees as real."""
    background_weight: float = Field(1.0, ge=0, le=1)
    """Weight of background pixels in the image L1 of real frames that carry a head mask (synthetic heads);
    1 = no masking. Head pixels weigh 1."""


class EvaluatedModel(Section):
    """One model compared by ``invertavatar evaluate``: a label, its weights, how it differs from the experiment."""

    label: str
    """Row label in tables and legend entry in plots."""
    checkpoint: Path | None = None
    """Model checkpoint folder (``InversionModels.save``); its saved experiment is the base. ``null``: fresh weights."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Dotted overrides of the base experiment, as ``invertavatar sweep --set`` takes them (``inverter.name: pti``)."""


_LEGACY_PROTOCOL_KEYS = {
    "driving_frames": ("same_identity", "driving_frames"),
    "cross_driving_frames": ("cross_identity", "driving_frames"),
    "source_frames": ("few_shot", "source_frames"),
    "few_shot_source_window": ("few_shot", "source_window"),
    "few_shot_eval_frames": ("few_shot", "eval_frames"),
}
"""Protocol settings that were ``evaluation`` keys before protocols became components: key -> (protocol, field)."""

_PAPER_PROTOCOLS = ("reconstruction", "same_identity", "cross_identity", "few_shot")


class EvaluationConfig(Section):
    """What ``invertavatar evaluate`` measures."""

    metrics: tuple[ComponentField("metric"), ...] = Field(
        default_factory=lambda: tuple({"name": n} for n in ("psnr", "l1", "ssim", "lpips", "csim", "akd", "fid")),
        validate_default=True,
    )
    """Metrics to report; those that cannot run here are listed as skipped with the reason."""
    protocols: tuple[ComponentField("evaluation_protocol"), ...] = Field(
        default_factory=lambda: tuple({"name": n} for n in _PAPER_PROTOCOLS), validate_default=True
    )
    """Protocols to run, by registry name (a bare name = its defaults): Tables 1-3, Fig. 6."""
    max_sequences: int | None = None
    """Evaluate at most this many sequences (in dataset order); ``null`` = all."""
    batch_size: int = 8
    """Frames rendered per batch."""
    qualitative_examples: int = 4
    """Rows of each qualitative grid (source / driving / output)."""
    models: tuple[EvaluatedModel, ...] = ()
    """Models to compare; empty = the experiment itself with fresh weights."""
    out_dir: Path = Path("runs/evaluation")
    """Where tables and plots go."""

    @model_validator(mode="before")
    @classmethod
    def _protocol_settings_moved(cls, data: Any) -> Any:
        # Files written before 0.1.x's protocol components hold the settings as evaluation keys.
        if not isinstance(data, dict) or not _LEGACY_PROTOCOL_KEYS.keys() & data.keys():
            return data
        data = dict(data)
        moved = sorted(_LEGACY_PROTOCOL_KEYS.keys() & data.keys())
        protocols = [{"name": p} if isinstance(p, str) else dict(p) for p in data.get("protocols", _PAPER_PROTOCOLS)]
        for key in moved:
            value = data.pop(key)
            protocol, field = _LEGACY_PROTOCOL_KEYS[key]
            for entry in protocols:
                if entry.get("name") == protocol:
                    entry.setdefault(field, value)
        data["protocols"] = protocols
        warnings.warn(
            f"evaluation.{', evaluation.'.join(moved)}: these settings moved into the protocols' own configs "
            f"(e.g. evaluation.protocols: [{{name: same_identity, driving_frames: 500}}]); the old keys go away in 0.2",
            DeprecationWarning,
            stacklevel=2,
        )
        return data


class ExperimentConfig(Section):
    """One experiment: which component of each kind, plus data, training and evaluation."""

    name: str = "experiment"
    """A label for tables and run folders."""
    seed: int = 0
    """Global seed."""
    morphable_model: ComponentField("morphable_model") = _named("procedural")
    """Head model whose expressions and cameras drive the synthetic training sequences."""
    rasterizer: ComponentField("rasterizer") = _named("torch")
    """Mesh rasterizer of the expression UV renders."""
    prior: ComponentField("prior") = _named("next3d")
    """The animatable 3D GAN prior the encoders invert (paper Sec. 3.1)."""
    encoders: EncodersConfig = Field(default_factory=EncodersConfig, validate_default=True)
    aggregator: ComponentField("aggregator") | None = _named("conv_gru")
    """Fuses frames in the recurrent decoders; ``null`` = one-shot encoders."""
    inverter: ComponentField("inverter") = _named("incremental")
    """The inversion method (ours or a baseline)."""
    data: DataConfig = DataConfig()
    # A factory: the defaults name metrics, so they validate through the registry, never at import.
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, validate_default=True)


def load_config_data(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a mapping; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:  # an empty file (or only comments) is a mistake, not a request for paper-size defaults
        raise ValueError(f"{path}: the config file is empty; expected a mapping such as `name: my-experiment`")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def load_experiment(path: str | Path, registry: Registry | None = None) -> ExperimentConfig:
    """Load and validate an experiment config file."""
    data = load_config_data(path)
    return ExperimentConfig.model_validate(data, context={"registry": registry or default_registry()})


def dump_config(config: BaseModel, path: str | Path) -> Path:
    """Write the fully resolved config as JSON (atomically) and return the path."""
    from invertavatar_core.io.atomic import atomic_write_text

    return atomic_write_text(path, config.model_dump_json(indent=2) + "\n")


def _describe(model: type[BaseModel], key: str) -> str:
    """The description of field ``key`` of ``model``, else the first docstring line of its section type."""
    field = model.model_fields.get(key)
    if field is None:
        return ""
    if field.description:
        return field.description
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation.__doc__:
        return annotation.__doc__.strip().splitlines()[0]
    return ""


def _comment(text: str, indent: str) -> list[str]:
    plain = " ".join(text.replace("``", "`").split())  # reST literals read as Markdown ones in YAML
    return [f"{indent}# {line}" for line in textwrap.wrap(plain, 100 - len(indent))]


def commented_yaml(model: type[BaseModel], data: Mapping[str, Any], header: str = "") -> str:
    """``data`` (a mapping of ``model``'s fields) as YAML with every field's description above it as a comment.

    Mappings of a nested section (``training``, ``data``) are written key by key with their own
    descriptions; component mappings and lists are written inline.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in data.items():
        lines += ["", *_comment(_describe(model, key), "")]
        annotation = model.model_fields[key].annotation if key in model.model_fields else None
        nested = isinstance(annotation, type) and issubclass(annotation, Section) and isinstance(value, Mapping)
        if nested and value:
            lines.append(f"{key}:")
            for sub_key, sub_value in value.items():
                lines += _comment(_describe(annotation, sub_key), "  ")
                dumped = yaml.safe_dump({sub_key: sub_value}, sort_keys=False, default_flow_style=True, width=1000)
                lines.append("  " + dumped.strip()[1:-1])
        else:
            dumped = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=True, width=1000)
            lines.append(dumped.strip()[1:-1])
    return "\n".join(lines).lstrip("\n") + "\n"
