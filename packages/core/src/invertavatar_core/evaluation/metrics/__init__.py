"""Evaluation metrics of the paper (Sec. 4.1, Tables 1-3), each a registered component of kind ``metric``.

``psnr``, ``l1``, ``ssim``, ``ms_ssim`` need nothing; ``lpips`` (AlexNet), ``csim`` (ArcFace
IR-SE-50) and ``fid`` (Inception-v3) need user-supplied weight files named in their configs and
report themselves unavailable, with the field and file, until given; ``akd`` needs a landmark
detector from the registry (``mediapipe``). ``lpips`` and ``ms_ssim`` also serve the losses
through their differentiable ``distance``. ``head_psnr``, ``head_ms_ssim`` and ``head_lpips``
score the head alone, over the target's head mask (:mod:`.head_mask`; synthetic heads).
"""

from invertavatar_core.evaluation.metrics.akd import AKD, AKDConfig, keypoint_distance
from invertavatar_core.evaluation.metrics.csim import CSIM, CSIMConfig, arcface_embedding
from invertavatar_core.evaluation.metrics.fid import FID, FIDConfig, frechet_distance
from invertavatar_core.evaluation.metrics.head_mask import (
    HeadLPIPS,
    HeadLPIPSConfig,
    HeadMaskedMetric,
    HeadMSSSIM,
    HeadMSSSIMConfig,
    HeadPSNR,
    HeadPSNRConfig,
    composite_over,
    head_psnr,
)
from invertavatar_core.evaluation.metrics.inception import FIDInceptionV3
from invertavatar_core.evaluation.metrics.l1 import L1, L1Config, l1_distance
from invertavatar_core.evaluation.metrics.lpips import LPIPS, LPIPSConfig, LPIPSNetwork
from invertavatar_core.evaluation.metrics.ms_ssim import MSSSIM, MSSSIMConfig, ms_ssim
from invertavatar_core.evaluation.metrics.per_image import PerImageMetric
from invertavatar_core.evaluation.metrics.psnr import PSNR, PSNRConfig, psnr
from invertavatar_core.evaluation.metrics.ssim import SSIM, SSIMConfig, ssim

__all__ = [
    "AKD",
    "AKDConfig",
    "CSIM",
    "CSIMConfig",
    "FID",
    "FIDConfig",
    "FIDInceptionV3",
    "HeadLPIPS",
    "HeadLPIPSConfig",
    "HeadMSSSIM",
    "HeadMSSSIMConfig",
    "HeadMaskedMetric",
    "HeadPSNR",
    "HeadPSNRConfig",
    "L1",
    "L1Config",
    "LPIPS",
    "LPIPSConfig",
    "LPIPSNetwork",
    "MSSSIM",
    "MSSSIMConfig",
    "PSNR",
    "PSNRConfig",
    "PerImageMetric",
    "SSIM",
    "SSIMConfig",
    "arcface_embedding",
    "composite_over",
    "frechet_distance",
    "head_psnr",
    "keypoint_distance",
    "l1_distance",
    "ms_ssim",
    "psnr",
    "ssim",
]
