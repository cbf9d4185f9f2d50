"""Flax NNX layers, channels-last, every parameter carrying logical axis names.

Import from here (``from common.nn import Attention, Conv, TransformerStack``) or from
the defining module. The names load on first use (PEP 562), so a light module of this
package (``common.nn.patchgan_config``: a config the commands parse before jax loads)
imports without jax and flax.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_EXPORTS = {
    "axes": "common.nn.axes",
    **dict.fromkeys(("Snake", "get_activation", "snake"), "common.nn.activations"),
    **dict.fromkeys(("Attention", "KVCache", "dot_product_attention", "reference_attention"),
                    "common.nn.attention"),
    "ConformerBlock": "common.nn.conformer",
    **dict.fromkeys(("Conv", "ConvTranspose"), "common.nn.conv"),
    "FeedForward": "common.nn.ffn",
    "FiLM": "common.nn.film",
    **dict.fromkeys(("GradientReversal", "gradient_reversal"), "common.nn.grad_reversal"),
    **dict.fromkeys(("Embed", "Linear"), "common.nn.linear"),
    **dict.fromkeys(("make_attention_mask", "positions_from_valid", "valid_from_lengths"),
                    "common.nn.masks"),
    **dict.fromkeys(("AdaRMSZero", "GroupNorm", "LayerNorm", "RMSNorm", "batch_norm"),
                    "common.nn.norms"),
    **dict.fromkeys(("PatchGAN", "patch_disc_fn"), "common.nn.patchgan"),
    "PatchGANConfig": "common.nn.patchgan_config",
    **dict.fromkeys(("RoPEConfig", "alibi_bias", "alibi_slopes", "apply_rope"),
                    "common.nn.positional"),
    **dict.fromkeys(("TransformerBlock", "TransformerConfig", "TransformerStack"),
                    "common.nn.transformer"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'common.nn' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if _EXPORTS[name] == f"common.nn.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

