"""The optimizer preset the codecs train with (generator and discriminator alike)."""

from __future__ import annotations

from common.train.configs import OptimizerConfig


def dac_adamw(lr: float, warmup: int) -> OptimizerConfig:
    """DAC's AdamW(0.8, 0.99) at peak ``lr`` after ``warmup`` steps, cosine to 0.1 x lr."""
    # DAC: AdamW(0.8, 0.99), lr 1e-4, exponential decay; clipping at 1e3 (ours 1e2).
    return OptimizerConfig(name="adamw", lr=lr, b1=0.8, b2=0.99, schedule="cosine",
                           warmup_steps=warmup, min_lr_ratio=0.1, clip_norm=100.0)
