"""Hook implementations only: registers every component of invertavatar-prior-next3d."""

from invertavatar_core import hookimpl

__all__ = ["invertavatar_add_commands", "invertavatar_register_priors"]


@hookimpl
def invertavatar_register_priors(registrar) -> None:
    """Register ``next3d``, the animatable 3D GAN prior (paper Sec. 3.1)."""
    from invertavatar_prior_next3d.next3d import Next3DPriorConfig, build_next3d

    registrar.add(
        "next3d",
        build_next3d,
        Next3DPriorConfig,
        description="Next3D++ animatable 3D GAN: G_tex / G_static / G_face tri-planes, volume rendering, SR",
        tiny={"preset": "tiny"},
    )


@hookimpl
def invertavatar_add_commands(subparsers, groups) -> None:
    """Add ``invertavatar train prior``, ``invertavatar sample`` and ``invertavatar convert release-prior``."""
    from invertavatar_prior_next3d.release.command import register as register_convert
    from invertavatar_prior_next3d.sample_command import register as register_sample
    from invertavatar_prior_next3d.train_command import register

    register(groups["train"])
    register_sample(subparsers, groups)
    register_convert(subparsers, groups)
