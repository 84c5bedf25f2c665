"""Hook specifications: how a plugin registers components (documentation only).

Every hook is called once per registry build with a fresh
:class:`~invertavatar_core.plugin.registry.Registrar` for its kind. Implementations call
``registrar.add(...)`` and return ``None``. Implementations may accept fewer arguments than the
spec (pluggy's opt-in arguments), so specs can grow safely.
"""

import pluggy

from invertavatar_core.plugin.manager import PROJECT_NAME

__all__ = [
    "hookspec",
    "invertavatar_add_commands",
    "invertavatar_register_aggregators",
    "invertavatar_register_encoders",
    "invertavatar_register_evaluation_protocols",
    "invertavatar_register_inverters",
    "invertavatar_register_landmark_detectors",
    "invertavatar_register_metrics",
    "invertavatar_register_morphable_models",
    "invertavatar_register_priors",
    "invertavatar_register_rasterizers",
]

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def invertavatar_register_priors(registrar) -> None:
    """Register 3D GAN priors.

    Called when a registry is built. Call ``registrar.add(name, factory, config_cls,
    description=...)`` for each prior; ``factory(config)`` returns an object satisfying
    :class:`~invertavatar_core.plugin.protocols.Prior`. Example: the prior-next3d package adds
    ``"next3d"`` with ``Next3DPrior`` and ``Next3DPriorConfig``.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_encoders(registrar) -> None:
    """Register image encoders (latent, texture and static roles).

    ``factory(config, *, prior_info, aggregator, registry)`` returns an
    :class:`~invertavatar_core.plugin.protocols.Encoder`; recurrent encoders build their per-level
    aggregators with ``registry.create("aggregator", aggregator, channels=...)``.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_aggregators(registrar) -> None:
    """Register temporal aggregators.

    ``factory(config, *, channels)`` returns an
    :class:`~invertavatar_core.plugin.protocols.Aggregator` for feature maps with ``channels``
    channels. Example: ``registrar.add("conv_gru", ConvGRUAggregator, ConvGRUAggregatorConfig,
    description="ConvGRU of Eq. 1")``.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_morphable_models(registrar) -> None:
    """Register morphable face models.

    ``factory(config)`` returns a :class:`~invertavatar_core.plugin.protocols.MorphableModel`; data
    files come from paths in the config and a missing file raises naming it.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_rasterizers(registrar) -> None:
    """Register triangle rasterisers.

    ``factory(config)`` returns a :class:`~invertavatar_core.plugin.protocols.Rasterizer`. Register
    optional backends only when their library imports.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_landmark_detectors(registrar) -> None:
    """Register 2D landmark detectors.

    ``factory(config)`` returns a :class:`~invertavatar_core.plugin.protocols.LandmarkDetector`.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_metrics(registrar) -> None:
    """Register evaluation metrics.

    ``factory(config)`` returns a :class:`~invertavatar_core.plugin.protocols.Metric`.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_inverters(registrar) -> None:
    """Register inversion methods (ours, baselines such as PTI).

    ``factory(config, *, registry, experiment, models=None)`` returns an
    :class:`~invertavatar_core.inversion.pipeline.Inverter` (``invert(frames)``, ``start(frame)``);
    ``models`` is an :class:`~invertavatar_core.inversion.models.InversionModels` (e.g. loaded
    from a checkpoint), else the factory builds the experiment's networks fresh.

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_register_evaluation_protocols(registrar) -> None:
    """Register evaluation protocols (which frames are inverted, which drive, what is compared).

    ``factory(config)`` returns an :class:`~invertavatar_core.plugin.protocols.EvaluationProtocol`;
    ``evaluation.protocols`` names them. Core adds ``reconstruction``, ``same_identity``,
    ``cross_identity`` and ``few_shot`` (paper Sec. 4).

    .. versionadded:: 0.1
    """


@hookspec
def invertavatar_add_commands(subparsers, groups) -> None:
    """Add subcommands to the ``invertavatar`` command line.

    ``subparsers`` is the top-level ``argparse`` subparsers action; ``groups`` maps the names of
    core's command groups (``"train"``, ``"convert"``) to their subparsers actions. Each added parser must set
    ``func`` (``parser.set_defaults(func=run)``) to a callable taking the parsed arguments and
    returning an exit status. Example: the faceverse package adds ``preprocess``; the prior package
    adds ``train prior`` and ``convert release-prior``.

    .. versionadded:: 0.1
    """
