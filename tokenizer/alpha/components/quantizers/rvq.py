"""Residual vector quantization (SoundStream, EnCodec, DAC) and the two-stage
phoneme-VQ + BSQ quantizer of the alpha codec.

RVQ quantizes ``z``, then the residual ``z - q_1``, and so on for ``num_quantizers``
levels; the output is the sum. Quantizer dropout (SoundStream) trains every prefix of
levels: with probability ``dropout`` an example keeps only its first ``n ~ U{1..N}``
levels, so one model serves several bitrates.

The two-stage quantizer is the alpha design: stage 1 is a small VQ codebook whose
logits are trained with CTC against the utterance's phonemes (so its codes carry the
linguistic content), stage 2 is BSQ on the residual (the acoustic detail).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tokenizer.alpha.components.quantizers.base import QuantizerOutput
from tokenizer.alpha.components.quantizers.bsq import BinarySphericalQuantizer
from tokenizer.alpha.components.quantizers.vq import VectorQuantizer


def _sum_dicts(dicts: list[dict[str, jax.Array]], mean: bool) -> dict[str, jax.Array]:
    keys = sorted({k for d in dicts for k in d})
    out = {}
    for k in keys:
        vals = jnp.stack([d[k] for d in dicts if k in d])
        out[k] = jnp.mean(vals) if mean else jnp.sum(vals)
    return out


class ResidualVQ(nnx.Module):
    """Shapes: ``z [B, T, D]`` -> codes ``[B, T, num_quantizers]``; losses summed over
    levels (as DAC), metrics averaged over levels. ``key`` drives quantizer dropout and
    dead-code restarts; without it (or in eval mode) every level is used."""

    def __init__(self, dim: int, num_quantizers: int = 8, codebook_size: int = 1024,
                 codebook_dim: int = 8, *, dropout: float = 0.0, ema: bool = False,
                 dead_code_threshold: float = 0.0, rngs: nnx.Rngs):
        self.num_quantizers, self.dropout = num_quantizers, dropout
        self.deterministic = False
        self.levels = nnx.List([
            VectorQuantizer(dim, codebook_size, codebook_dim, ema=ema,
                            dead_code_threshold=dead_code_threshold, rngs=rngs)
            for _ in range(num_quantizers)])

    @property
    def codebook_size(self) -> int:
        return self.levels[0].codebook_size

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """int ``[B, T, n]`` (n <= num_quantizers levels) -> ``[B, T, D]``."""
        return sum(self.levels[i].decode_codes(codes[..., i]) for i in range(codes.shape[-1]))

    def __call__(self, z: jax.Array, valid: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> QuantizerOutput:
        b = z.shape[0]
        keys = (jax.random.split(key, self.num_quantizers + 1) if key is not None
                else [None] * (self.num_quantizers + 1))
        if self.dropout > 0 and key is not None and not self.deterministic:
            n = jax.random.randint(keys[-1], (b,), 1, self.num_quantizers + 1)
            drop = jax.random.uniform(jax.random.fold_in(keys[-1], 1), (b,)) < self.dropout
            n_used = jnp.where(drop, n, self.num_quantizers)
        else:
            n_used = jnp.full((b,), self.num_quantizers)
        residual, total = z, jnp.zeros_like(z)
        codes, losses, metrics = [], [], []
        for i, level in enumerate(self.levels):
            keep = (i < n_used)[:, None]  # [B, 1]
            level_valid = keep if valid is None else valid & keep
            out = level(residual, jnp.broadcast_to(level_valid, z.shape[:2]), key=keys[i])
            q = out.quantized * keep[..., None].astype(out.quantized.dtype)
            total = total + q
            residual = residual - q
            codes.append(out.codes[..., 0])
            losses.append(out.losses)
            metrics.append(out.metrics)
        return QuantizerOutput(quantized=total, codes=jnp.stack(codes, -1),
                               losses=_sum_dicts(losses, mean=False),
                               metrics=_sum_dicts(metrics, mean=True))


class PhonemeBSQ(nnx.Module):
    """Stage 1: ``VectorQuantizer`` with ``phoneme_vocab`` codes (the phoneme vocabulary
    including the CTC blank, id 0) whose ``logits [B, T, K]`` the CTC loss trains;
    stage 2: ``BinarySphericalQuantizer`` on the residual. Output codes ``[B, T, 2]``
    (phoneme code, BSQ code); losses prefixed ``vq_`` and ``bsq_``.

    As the design says, stage 1 is trained by the phoneme loss alone: the stage-1 vector
    handed to the decoder and subtracted for the residual is ``out_proj(sg(code))``, so
    the reconstruction and adversarial gradients never reach the code *selection* (the
    stage-1 input projection, codebook and logit scale), which only CTC and the VQ's own
    commitment / codebook terms move. Its ``out_proj`` is the decoder's embedding of the
    phoneme code and learns from the reconstruction, and the encoder learns from both
    (through the logits and through the residual). ``shared_gradient=True`` restores the
    plain straight-through, where the reconstruction also moves stage 1.

    EMA codebooks are refused: EMA updates and dead-code restarts move or reassign a
    code regardless of the CTC label it stands for, breaking phoneme identity. Decoding
    needs both streams (the decoder is never trained on stage 1 alone)."""

    def __init__(self, dim: int, phoneme_vocab: int, *, vq_dim: int = 8, num_bits: int = 16,
                 group_size: int = 8, gamma: float = 1.0, inv_temperature: float = 1.0,
                 ema: bool = False, dead_code_threshold: float = 0.0,
                 shared_gradient: bool = False, init_logit_scale: float = 10.0,
                 rngs: nnx.Rngs):
        if ema or dead_code_threshold:
            raise ValueError("phoneme_bsq: the stage-1 codebook cannot use EMA updates or "
                             "dead-code restarts (quantizer.ema / dead_code_threshold): they "
                             "move codes regardless of the phoneme each one stands for")
        self.shared_gradient = shared_gradient
        self.phoneme = VectorQuantizer(dim, phoneme_vocab, vq_dim,
                                       init_logit_scale=init_logit_scale, rngs=rngs)
        self.acoustic = BinarySphericalQuantizer(dim, num_bits, group_size=group_size,
                                                 gamma=gamma, inv_temperature=inv_temperature,
                                                 rngs=rngs)

    def decode_codes(self, codes: jax.Array) -> jax.Array:
        """int ``[B, T, 2]`` -> ``[B, T, D]``."""
        if codes.shape[-1] != 2:
            raise ValueError(f"phoneme_bsq decodes (phoneme, bsq) code pairs [B, T, 2], got "
                             f"{codes.shape[-1]} stream(s): stage 1 alone is not trained")
        return (self.phoneme.decode_codes(codes[..., 0])
                + self.acoustic.decode_codes(codes[..., 1]))

    def __call__(self, z: jax.Array, valid: jax.Array | None = None, *,
                 key: jax.Array | None = None) -> QuantizerOutput:
        first = self.phoneme(z, valid, key=key)
        if self.shared_gradient:
            q1 = first.quantized
        else:
            code = self.phoneme.codes_table()[first.codes[..., 0]]
            q1 = self.phoneme.out_proj(jax.lax.stop_gradient(code).astype(z.dtype))
        second = self.acoustic(z - q1, valid)
        losses = {**{f"vq_{k}": v for k, v in first.losses.items()},
                  **{f"bsq_{k}": v for k, v in second.losses.items()}}
        metrics = {**{f"vq_{k}": v for k, v in first.metrics.items()},
                   **{f"bsq_{k}": v for k, v in second.metrics.items()}}
        return QuantizerOutput(quantized=q1 + second.quantized,
                               codes=jnp.concatenate([first.codes, second.codes], -1),
                               losses=losses, metrics=metrics, logits=first.logits)
