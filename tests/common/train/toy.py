"""A tiny sequence-regression model, its loss and data, for the training tests."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from common.nn.transformer import TransformerConfig, TransformerStack


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    dim: int = 32
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    dropout: float = 0.1
    dtype: str | None = None


class Toy(nnx.Module):
    """``x [B, T, 4] -> y [B, T, 1]`` through a small transformer stack."""

    def __init__(self, cfg: ToyConfig, *, rngs: nnx.Rngs):
        self.inp = Linear(4, cfg.dim, axes=(None, ax.EMBED), dtype=cfg.dtype, rngs=rngs)
        self.body = TransformerStack(
            TransformerConfig(dim=cfg.dim, num_layers=cfg.layers, num_heads=cfg.heads,
                              num_kv_heads=cfg.kv_heads, mlp_dim=2 * cfg.dim, causal=True,
                              dropout=cfg.dropout, dtype=cfg.dtype), rngs=rngs)
        self.out = Linear(cfg.dim, 1, axes=(ax.EMBED, None), dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.body(self.inp(x)))


def toy_loss(model: Toy, batch: dict, rng: jax.Array, noise: float = 0.01):
    """Masked MSE, with a little input noise drawn from the step's key."""
    x = batch["x"] + noise * jax.random.normal(rng, batch["x"].shape)
    pred = model(x).astype(jnp.float32)
    err = (pred - batch["y"]) ** 2 * batch["mask"][..., None]
    loss = jnp.sum(err) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)
    if "scale" in batch:  # lets a test inject NaN/Inf
        loss = loss * jnp.mean(batch["scale"])
    return loss, {"mse": loss}


def toy_batch(seed: int, batch: int = 16, length: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, length, 4)).astype(np.float32)
    y = np.cumsum(x[..., :1] * 0.5, axis=1).astype(np.float32)
    mask = np.ones((batch, length), np.float32)
    mask[: batch // 4, : length // 4] = 0.0  # some left padding
    return {"x": x, "y": y, "mask": mask}


class ToyIterator:
    """Deterministic, checkpointable batch stream (``get_state``/``set_state`` as grain)."""

    def __init__(self, seed: int = 0, batch: int = 16):
        self.seed, self.batch, self.position = seed, batch, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        b = toy_batch(self.seed * 100_003 + self.position, self.batch)
        self.position += 1
        return b

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])
