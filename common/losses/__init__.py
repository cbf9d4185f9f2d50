"""Pure loss functions shared by the models: regression, spectral, adversarial, KL, CTC, R1,
AAM softmax, SSIM / MS-SSIM.

Every loss is a pure, jit-friendly function of arrays, computed in float32, masked by
valid masks where data can be padded (padded entries contribute nothing; means are over
valid entries, ``sum / max(count, 1)``), and returns ``(loss, metrics)`` with ``metrics``
a flat dict of float32 scalars (``ctc_loss`` adds one ``[B]`` entry). Static choices
(resolutions, reductions, windows) are keyword arguments meant to be static under jit.
"""

from common.losses.aam_softmax import aam_softmax_loss, cosine_logits
from common.losses.adversarial import (
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from common.losses.ctc import ctc_loss
from common.losses.kl import gaussian_kl, gaussian_kl_between
from common.losses.r1 import instance_noise, r1_penalty
from common.losses.regression import (
    abs_sign_grad,
    l1_loss,
    l2_loss,
    masked_mean,
    masked_sum_count,
    zero_invalid,
)
from common.losses.spectral import (
    SC_DENOMINATOR_FLOOR,
    as_batch_time,
    mel_l1_loss,
    multi_resolution_stft_loss,
    multi_scale_mel_loss,
    sample_mask,
)
from common.losses.ssim import ms_ssim, ms_ssim_loss, ssim, ssim_loss

__all__ = [
    "SC_DENOMINATOR_FLOOR",
    "aam_softmax_loss",
    "abs_sign_grad",
    "as_batch_time",
    "cosine_logits",
    "ctc_loss",
    "feature_matching_loss",
    "gaussian_kl",
    "gaussian_kl_between",
    "hinge_d_loss",
    "hinge_g_loss",
    "instance_noise",
    "l1_loss",
    "l2_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "masked_mean",
    "masked_sum_count",
    "mel_l1_loss",
    "ms_ssim",
    "ms_ssim_loss",
    "multi_resolution_stft_loss",
    "multi_scale_mel_loss",
    "r1_penalty",
    "sample_mask",
    "ssim",
    "ssim_loss",
    "zero_invalid",
]
