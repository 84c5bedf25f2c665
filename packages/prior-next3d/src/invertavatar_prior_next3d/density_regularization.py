"""EG3D's density regularisation (docs/design/training.md): densities at nearby points should agree.

Random points in the tri-plane box and copies perturbed by Gaussian noise of standard deviation
``p_dist`` (0.004) are decoded from the animated tri-planes; the loss is the mean absolute
difference of their raw densities (weight 0.25, applied every 4th generator step). EG3D draws
the points in [-1, 1]^3, half of them outside the box where every density is the same constant;
we draw them inside the box, where the loss says something.
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from invertavatar_prior_next3d.next3d import Next3DPrior

__all__ = ["density_regularization"]


def density_regularization(
    prior: Next3DPrior,
    planes: Float[Tensor, "B 3 C R R"],
    *,
    points: int = 1000,
    p_dist: float = 0.004,  # released recipe
) -> Tensor:
    """Mean |sigma(x) - sigma(x + noise)| over ``points`` random points per tri-plane (global RNG)."""
    b = planes.shape[0]
    box = prior.config.box_size
    initial = (torch.rand(b, points, 3, device=planes.device) - 0.5) * box
    perturbed = initial + torch.randn_like(initial) * p_dist
    sigma = prior.density(planes, torch.cat([initial, perturbed], dim=1)).float()
    return F.l1_loss(sigma[:, :points], sigma[:, points:])
