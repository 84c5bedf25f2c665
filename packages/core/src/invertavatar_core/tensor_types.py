"""The dimension vocabulary for tensor annotations, written once.

Every public tensor argument is annotated with jaxtyping, e.g. ``Float[Tensor, "B 3 H W"]``.
Dimension names used across the toolkit:

- ``B`` batch (identities), ``T`` frames / views of one identity, ``C`` channels,
- ``H W`` image or feature height and width (channel-first, NCHW),
- ``N`` mesh vertices, ``F`` mesh faces, ``L`` landmarks,
- ``S`` identity (shape) coefficients, ``E`` expression coefficients,
- ``K`` latent vectors in w+ (``num_ws``), ``D`` latent width (``w_dim``).

Value conventions (written once, referenced by the protocols):

- images: float RGB in [-1, 1] (the EG3D convention); uint8 only at file boundaries;
- cameras: the 25-number EG3D label, see :mod:`invertavatar_core.geometry.cameras`;
- UV coordinates: u, v in [0, 1] on mesh vertices, in [-1, 1] when stored in images.
"""

from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Shaped", "Tensor", "Image", "Camera", "Latents"]

Image = Float[Tensor, "B 3 H W"]
"""A batch of RGB images in [-1, 1]."""

Camera = Float[Tensor, "B 25"]
"""EG3D camera labels: 16 OpenCV cam-to-world values, then 9 normalised intrinsics."""

Latents = Float[Tensor, "B K D"]
"""w+ latent codes."""
