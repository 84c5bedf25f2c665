"""invertavatar-encoders: Image encoders for GAN inversion: E_latent (e4e on IR-SE-50), E_tex and E_tri UNets."""

__all__: list[str] = []
