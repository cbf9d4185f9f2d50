"""``DiTConfig``: the sizes of the DiT denoiser (``worldmodel.diffusion.dit``).

Its own module, without jax or flax, so that the commands parse configs before jax loads.

Sizes of Peebles & Xie 2023 ("Scalable diffusion models with transformers", Table 1), for
``DiTConfig.sized``; the "/2" is ``patch_size``, and on a 32x32x4 latent (256 px images
through an f=8 VAE) DiT-S/2 sees 256 tokens. Parameter counts from ``nnx.eval_shape``
(``num_classes=1000``, 32x32x4 latents, no vector conditioning) match the paper's rounded
ones (33 M, 130 M, 458 M, 675 M):

    name   dim  depth  heads   params
    S      384     12      6   32.86 M
    B      768     12     12   130.30 M
    L     1024     24     16   457.82 M
    XL    1152     28     16   674.82 M

``tiny()`` has 50,288 (unconditioned, 8x8x4 latents).
"""

from __future__ import annotations

import dataclasses

# name -> (dim, depth, num_heads), DiT's Table 1.
SIZES: dict[str, tuple[int, int, int]] = {
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1152, 28, 16),
}
_DTYPES = (None, "float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Sizes of a DiT over latents ``[B, H, W, C]`` (``spatial_dims=2``) or ``[B, T, C]`` (1)."""

    in_channels: int = 4
    """latent channels; the prediction has the same (no learned variance: both objectives
    predict one velocity)."""
    input_size: int = 32
    """the latent side (images) or length (sequences) the model is trained at: a multiple
    of ``patch_size``. Calls accept any multiple of the patch (RoPE has no table), this is
    what ``latent_shape`` reports for sampling."""
    spatial_dims: int = 2
    """2: image latents ``[B, H, W, C]`` with 2-D RoPE over the patch grid; 1: sequence
    latents ``[B, T, C]`` (audio) with 1-D RoPE."""
    patch_size: int = 2
    """latent positions per token along each spatial axis."""
    dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    """the MLP's hidden width is ``int(dim * mlp_ratio)``."""
    num_classes: int = 0
    """0: no class conditioning; else a table of ``num_classes + 1`` rows, the last the
    learned null class of classifier-free guidance."""
    cond_dim: int = 0
    """0: no vector conditioning; else the width of a per-example vector (a speaker or
    caption embedding) projected into the conditioning; its null is the zero vector."""
    cond_dropout: float = 0.1
    """probability with which training replaces an example's condition by the null one
    (``dit.drop_condition``), so the same network learns the unconditional prediction
    that classifier-free guidance needs (DiT's 0.1)."""
    rope_base: float = 10_000.0
    qk_norm: bool = False
    """RMSNorm on queries and keys (SD3 / Lumina, for stability at scale; DiT has none)."""
    scan_layers: bool = True
    """stack the blocks and ``nnx.scan`` them, so compile time does not grow with depth
    (False: a Python list, for debugging and per-block inspection)."""
    dtype: str | None = None
    """compute dtype ("bfloat16"; None: float32); parameters, norms and the time embedding
    stay float32."""

    def __post_init__(self):
        for name in ("in_channels", "input_size", "patch_size", "dim", "depth", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"DiTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.spatial_dims not in (1, 2):
            raise ValueError(f"DiTConfig.spatial_dims must be 1 (sequences) or 2 (images), "
                             f"got {self.spatial_dims}")
        if self.input_size % self.patch_size:
            raise ValueError(f"DiTConfig.input_size={self.input_size} is not a multiple of "
                             f"patch_size={self.patch_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"DiTConfig.dim={self.dim} is not divisible by "
                             f"num_heads={self.num_heads}")
        rotary_unit = 2 * self.spatial_dims  # a (sin, cos) pair per spatial axis
        if self.head_dim % rotary_unit:
            raise ValueError(f"DiTConfig: head_dim = dim / num_heads = {self.head_dim} must be "
                             f"a multiple of {rotary_unit} (RoPE rotates pairs of dims, split "
                             f"equally between {self.spatial_dims} spatial axes)")
        if not self.mlp_ratio > 0:
            raise ValueError(f"DiTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.num_classes < 0 or self.cond_dim < 0:
            raise ValueError(f"DiTConfig.num_classes and cond_dim must be >= 0 (0: none), got "
                             f"{self.num_classes}, {self.cond_dim}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"DiTConfig.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not self.rope_base > 1.0:
            raise ValueError(f"DiTConfig.rope_base must be > 1, got {self.rope_base}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"DiTConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def patch_dim(self) -> int:
        """Latent values per token: ``patch_size ** spatial_dims * in_channels``."""
        return self.patch_size**self.spatial_dims * self.in_channels

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """One example's latent at ``input_size``: ``(H, W, C)`` or ``(T, C)``."""
        return (self.input_size,) * self.spatial_dims + (self.in_channels,)

    @classmethod
    def tiny(cls, **overrides) -> DiTConfig:
        """The tests' and CPU runs' size: 2 blocks of width 32, 8x8x4 latents."""
        kw = dict(input_size=8, dim=32, depth=2, num_heads=2)
        return cls(**{**kw, **overrides})

    @classmethod
    def sized(cls, name: str, **overrides) -> DiTConfig:
        """DiT-``name`` (``"S"``, ``"B"``, ``"L"``, ``"XL"``; patch 2 unless overridden)."""
        if name not in SIZES:
            raise ValueError(f"unknown DiT size {name!r}; valid: {', '.join(SIZES)}")
        dim, depth, heads = SIZES[name]
        return cls(**{**dict(dim=dim, depth=depth, num_heads=heads), **overrides})
