"""Independent float64 numpy references for attention and RoPE (test-only)."""

from __future__ import annotations

import numpy as np


def rope_complex(x: np.ndarray, pos: np.ndarray, base: float, rot: int,
                 interleaved: bool) -> np.ndarray:
    """RoPE as complex multiplication: pairs (a, b) -> (a + ib) * exp(i * pos * theta).

    x: [B, T, H, D]; pos: [B, T].
    """
    x = x.astype(np.float64)
    theta = base ** (-np.arange(0, rot, 2, dtype=np.float64) / rot)  # [rot/2]
    ang = pos.astype(np.float64)[:, :, None, None] * theta  # [B, T, 1, rot/2]
    xr = x[..., :rot]
    if interleaved:
        z = xr[..., 0::2] + 1j * xr[..., 1::2]
    else:
        z = xr[..., : rot // 2] + 1j * xr[..., rot // 2:]
    z = z * np.exp(1j * ang)
    out = np.empty_like(xr)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
    else:
        out[..., : rot // 2], out[..., rot // 2:] = z.real, z.imag
    return np.concatenate([out, x[..., rot:]], axis=-1)


def attention(q, k, v, *, mask=None, bias=None, scale, softcap=None) -> np.ndarray:
    """Loop-over-heads attention in float64. q [B,T,H,D], k/v [B,S,K,D], mask [B,1|H,T,S]."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, t, h, d = q.shape
    kh = k.shape[2]
    out = np.zeros((b, t, h, d))
    for bi in range(b):
        for hi in range(h):
            kv = hi // (h // kh)
            logits = q[bi, :, hi] @ k[bi, :, kv].T * scale  # [T, S]
            if softcap is not None:
                logits = softcap * np.tanh(logits / softcap)
            if bias is not None:
                logits = logits + np.asarray(bias, np.float64)[bi if bias.shape[0] > 1 else 0,
                                                               hi if bias.shape[1] > 1 else 0]
            if mask is not None:
                m = np.asarray(mask)[bi if mask.shape[0] > 1 else 0, hi if mask.shape[1] > 1 else 0]
                logits = np.where(m, logits, -np.inf)
            logits = logits - logits.max(axis=-1, keepdims=True)
            p = np.exp(logits)
            p = p / p.sum(axis=-1, keepdims=True)
            out[bi, :, hi] = p @ v[bi, :, kv]
    return out

