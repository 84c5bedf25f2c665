"""invertavatar-prior-next3d: The animatable 3D GAN prior (Next3D-style generator, tri-plane renderer, discriminator, training)."""

__all__: list[str] = []
