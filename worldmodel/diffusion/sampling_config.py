"""``SamplingConfig``: how a diffusion run draws samples for its logs and evaluation.

Its own module without jax: the commands parse configs before jax loads.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

SAMPLERS = ("", "euler", "heun", "ddim")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Sampler, step count and guidance (training does not sample)."""

    sampler: Literal["", "euler", "heun", "ddim"] = ""
    """"" : the objective's default (flow: euler, diffusion: ddim)."""
    steps: int = 32
    guidance: float = 1.0
    """classifier-free guidance scale (1: the conditional prediction alone, one network
    call per step; 0: unconditional)."""

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampling.sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"sampling.steps must be >= 1, got {self.steps}")
        if self.guidance < 0:
            raise ValueError(f"sampling.guidance must be >= 0, got {self.guidance}")

    def check(self, objective: str) -> None:
        """Raise unless the sampler applies to ``objective`` ("flow" or "diffusion")."""
        if objective == "flow" and self.sampler == "ddim":
            raise ValueError("sampling.sampler='ddim' needs objective='diffusion' (flow "
                             "samplers: euler, heun)")
        if objective == "diffusion" and self.sampler in ("euler", "heun"):
            raise ValueError(f"sampling.sampler={self.sampler!r} needs "
                             f"objective='flow' (diffusion's sampler: ddim)")
