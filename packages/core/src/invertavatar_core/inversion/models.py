"""The networks of one experiment (prior, E_latent, E_tex, E_tri) and the model-checkpoint folder.

A *model checkpoint* (what ``invertavatar reconstruct --checkpoint DIR`` reads and what every
training stage writes at each checkpoint and at the end, into its run folder) is::

    DIR/config.json              the resolved ExperimentConfig
    DIR/prior/                   component directory (config.json + model.safetensors)
    DIR/encoders/latent/         E_latent
    DIR/encoders/texture/        E_tex  (absent when encoders.texture is null)
    DIR/encoders/static/         E_tri  (absent when encoders.static is null)

Component directories are written with :func:`invertavatar_core.io.checkpoints.save_component`
(atomic, safetensors). Documented for users in ``docs/checkpoints.md``.
"""

from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from invertavatar_core.config.experiment import ExperimentConfig, dump_config, load_experiment
from invertavatar_core.io.atomic import check_output_dir, read_marker, write_marker
from invertavatar_core.io.checkpoints import RUN_KIND, CheckpointError, load_component, save_component
from invertavatar_core.plugin.kinds import ComponentConfig
from invertavatar_core.plugin.protocols import Encoder, EncoderRole, FeatureEncoder, LatentEncoder, Prior
from invertavatar_core.plugin.registry import Registry

__all__ = ["EXPERIMENT_FILE", "FEATURE_ROLES", "InversionModels", "component_dir", "is_model_checkpoint"]

EXPERIMENT_FILE = "config.json"
"""The experiment config inside a model checkpoint (also a training run's resolved config)."""
FEATURE_ROLES: tuple[EncoderRole, ...] = ("texture", "static")
"""The fine-stage encoder roles, in the order their edits are merged."""


def component_dir(root: str | Path, part: str) -> Path:
    """Where ``part`` (``prior``, ``latent``, ``texture``, ``static``) lives in a model checkpoint."""
    return Path(root) / ("prior" if part == "prior" else f"encoders/{part}")


def is_model_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds an experiment config and at least the prior and E_latent."""
    path = Path(path)
    return (
        (path / EXPERIMENT_FILE).is_file()
        and (component_dir(path, "prior") / "config.json").is_file()
        and (component_dir(path, "latent") / "config.json").is_file()
    )


def _clear_init_only(config: ComponentConfig) -> ComponentConfig:
    update = {f: None for f in type(config).init_only_fields if getattr(config, f) is not None}
    return config.model_copy(update=update) if update else config


class InversionModels(nn.Module):
    """Prior + E_latent + optional E_tex / E_tri of one experiment, as one module (``.to``, ``.eval``).

    Attributes ``prior``, ``latent``, ``texture``, ``static`` (the last two may be None) and
    ``experiment`` (the config they were built from).
    """

    def __init__(
        self,
        experiment: ExperimentConfig,
        prior: Prior,
        latent: LatentEncoder,
        texture: FeatureEncoder | None = None,
        static: FeatureEncoder | None = None,
    ) -> None:
        super().__init__()
        self.experiment = experiment
        self.prior = prior
        self.latent = latent
        self.texture = texture
        self.static = static
        for role, encoder in (("latent", latent), ("texture", texture), ("static", static)):
            if encoder is None:
                continue
            if not isinstance(encoder, Encoder) or getattr(encoder, "role", None) != role:
                raise TypeError(
                    f"encoders.{role} ({getattr(encoder, 'config', type(encoder).__name__)}) has role "
                    f"{getattr(encoder, 'role', None)!r}; the {role} slot needs an encoder with role {role!r}"
                )

    @property
    def device(self) -> torch.device:
        """Device of the prior's first tensor."""
        for tensor in self.prior.parameters():
            return tensor.device
        return torch.device("cpu")

    def feature_encoders(self) -> dict[str, FeatureEncoder]:
        """The fine-stage encoders present, by role (``texture``, ``static``)."""
        return {role: getattr(self, role) for role in FEATURE_ROLES if getattr(self, role) is not None}

    def frame_groups(self, count: int) -> list[list[int]] | None:
        """The frame groups the fine-stage encoders fold ``count`` frames in, or ``None`` (one by one)."""
        plans = {
            role: getattr(encoder, "frame_groups", lambda n: None)(count)
            for role, encoder in self.feature_encoders().items()
        }
        if len({repr(p) for p in plans.values()}) > 1:
            raise ValueError(f"the fine-stage encoders group frames differently: {plans}")
        return next(iter(plans.values()), None)

    def parts(self) -> Iterator[tuple[str, nn.Module, ComponentConfig]]:
        """``(part, module, config)`` for the prior and every encoder present."""
        e = self.experiment
        yield "prior", self.prior, e.prior
        yield "latent", self.latent, e.encoders.latent
        for role in FEATURE_ROLES:
            if getattr(self, role) is not None:
                yield role, getattr(self, role), getattr(e.encoders, role)

    @classmethod
    def build(
        cls,
        experiment: ExperimentConfig,
        registry: Registry,
        *,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> "InversionModels":
        """Build every network of ``experiment`` from its config (fresh weights; prior seeded by ``seed``)."""
        torch.manual_seed(experiment.seed if seed is None else seed)
        prior = registry.create("prior", experiment.prior)
        return cls._with_prior(experiment, registry, prior).to(device)

    @classmethod
    def _with_prior(cls, experiment: ExperimentConfig, registry: Registry, prior: Prior) -> "InversionModels":
        encoders = experiment.encoders
        context = {"prior_info": prior.info, "registry": registry}
        latent = registry.create("encoder", encoders.latent, aggregator=None, **context)
        feature = {
            role: registry.create("encoder", getattr(encoders, role), aggregator=experiment.aggregator, **context)
            for role in FEATURE_ROLES
            if getattr(encoders, role) is not None
        }
        return cls(experiment, prior, latent, **feature)

    def save(self, root: str | Path, parts: tuple[str, ...] | None = None) -> Path:
        """Write the model checkpoint folder (see the module doc); each part is written atomically.

        Args:
            root: the folder.
            parts: only these parts (e.g. skip a frozen prior already written); ``None`` = all.
        """
        root = check_output_dir(root, RUN_KIND, reuse=True, signature=(EXPERIMENT_FILE,), what="model checkpoint")
        if read_marker(root) is None:
            write_marker(root, RUN_KIND)
        dump_config(self.experiment, root / EXPERIMENT_FILE)
        for part, module, config in self.parts():
            if parts is None or part in parts:
                save_component(module, _clear_init_only(config), component_dir(root, part))
        return root

    @classmethod
    def load(
        cls,
        root: str | Path,
        registry: Registry,
        *,
        device: torch.device | str = "cpu",
        experiment: ExperimentConfig | None = None,
    ) -> "InversionModels":
        """Read a model checkpoint folder strictly (every tensor must match).

        Args:
            root: the folder.
            registry: resolves the component names.
            device: where the networks go.
            experiment: use this config instead of ``root/config.json`` (its encoders must match the saved ones).
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"model checkpoint not found: {root}")
        if experiment is None:
            if not (root / EXPERIMENT_FILE).is_file():
                raise CheckpointError(
                    f"{root}: not a model checkpoint (missing {EXPERIMENT_FILE}); see docs/checkpoints.md"
                )
            experiment = load_experiment(root / EXPERIMENT_FILE, registry)
        parts = {}
        prior, _ = load_component(component_dir(root, "prior"), registry, "prior")
        context = {"prior_info": prior.info, "registry": registry}
        roles = {"latent": experiment.encoders.latent, **{r: getattr(experiment.encoders, r) for r in FEATURE_ROLES}}
        for role, config in roles.items():
            where = component_dir(root, role)
            if config is None:
                continue
            if not where.is_dir():
                raise CheckpointError(
                    f"{root}: experiment uses encoders.{role} = {config.name!r} but {where} is missing"
                )
            aggregator = None if role == "latent" else experiment.aggregator
            parts[role], _ = load_component(where, registry, "encoder", aggregator=aggregator, **context)
        latent = parts.pop("latent")
        return cls(experiment, prior, latent, **parts).to(device)

    def load_matching(
        self, root: str | Path, parts: tuple[str, ...] = ("prior", "latent", "texture", "static")
    ) -> list[str]:
        """Initialise from another experiment's model checkpoint where it fits (stage 2 -> stage 3).

        Every tensor of each saved part must exist in the built module with the same shape;
        tensors only the built module has (e.g. the aggregators a recurrent decoder adds) keep
        their fresh values and are returned by name.

        Raises:
            CheckpointError: a saved tensor the module lacks, or a shape mismatch (all named).
        """
        fresh = []
        lookup = {name: module for name, module, _ in self.parts()}
        for part in parts:
            if part not in lookup:
                continue
            weights = component_dir(root, part) / "model.safetensors"
            if not weights.is_file():
                raise CheckpointError(f"{root}: cannot initialise {part} from it, {weights} is missing")
            module = lookup[part]
            with safe_open(str(weights), framework="pt") as handle:
                shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
            expected = module.state_dict()
            problems = [f"unexpected {k}" for k in shapes if k not in expected]
            problems += [
                f"{k}: checkpoint {shapes[k]}, model {tuple(expected[k].shape)}"
                for k in shapes
                if k in expected and tuple(expected[k].shape) != shapes[k]
            ]
            if problems:
                raise CheckpointError(f"{weights} does not fit encoders.{part}: " + "; ".join(problems))
            tensors = load_file(str(weights), device=str(self.device))
            module.load_state_dict(tensors, strict=False)
            fresh += [f"{part}.{k}" for k in expected if k not in shapes]
        return fresh
