"""Flax NNX layers, channels-last, every parameter carrying logical axis names.

Import from here (``from common.nn import Attention, Conv, TransformerStack``) or from
the defining module.
"""

from common.nn import axes
from common.nn.activations import Snake, get_activation, snake
from common.nn.attention import Attention, KVCache, dot_product_attention, reference_attention
from common.nn.conformer import ConformerBlock
from common.nn.conv import Conv, ConvTranspose
from common.nn.ffn import FeedForward
from common.nn.film import FiLM
from common.nn.grad_reversal import GradientReversal, gradient_reversal
from common.nn.linear import Embed, Linear
from common.nn.masks import make_attention_mask, positions_from_valid, valid_from_lengths
from common.nn.norms import AdaRMSZero, LayerNorm, RMSNorm, batch_norm
from common.nn.positional import RoPEConfig, alibi_bias, alibi_slopes, apply_rope
from common.nn.transformer import TransformerBlock, TransformerConfig, TransformerStack

__all__ = [
    "AdaRMSZero", "Attention", "ConformerBlock", "Conv", "ConvTranspose", "Embed",
    "FeedForward", "FiLM", "GradientReversal", "KVCache", "LayerNorm", "Linear", "RMSNorm",
    "RoPEConfig", "Snake",
    "TransformerBlock", "TransformerConfig", "TransformerStack", "alibi_bias", "alibi_slopes",
    "apply_rope", "axes", "batch_norm", "dot_product_attention", "get_activation",
    "gradient_reversal", "make_attention_mask", "positions_from_valid", "reference_attention",
    "snake", "valid_from_lengths",
]
