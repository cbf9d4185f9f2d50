"""Official SNAC weights (the PyTorch ``snac`` package) into our model and back: the
library behind ``python -m tokenizer.snac.convert``.

``load_pretrained(src)`` reads a downloaded model folder (``config.json`` +
``pytorch_model.bin`` or ``model.safetensors``, as on the Hugging Face hub:
hubertsiuzdak/snac_24khz, _32khz, _44khz) or a weights file with its ``config.json``.
Reading needs no PyTorch (``common.train.torch_weights``). ``to_state_dict`` hands our
weights back in the package's layout.

Name mapping (PyTorch -> ours; ``nn.Sequential`` indices as the package builds them):

    encoder.block.0                      encoder.conv_in
    encoder.block.{1..n}                 encoder.blocks.{i}: block.{0,1,2} -> units.{j}
                                           (block.{0,1,2,3} -> act1, conv1, act2, conv2),
                                           block.3 -> act, block.4 -> down.conv
    encoder.block.{n+1}  (if attention)  encoder.attn (norm, to_qkv -> qkv, to_out -> out)
    encoder.block.last                   encoder.conv_out
    quantizer.quantizers.{l}             quantizer.levels.{l} (in_proj, out_proj, codebook)
    decoder.model.{0[,1]}                decoder.conv_in.{0[,1]}   (two when depthwise)
    decoder.model.{next} (if attention)  decoder.attn
    decoder.model.{...}  DecoderBlock    decoder.blocks.{i}: block.0 -> act, block.1 ->
                                           up.conv, [block.2.linear -> noise.linear
                                           (every published model has noise blocks)],
                                           units
    decoder.model.{-3}, {-2}             decoder.act, decoder.conv_out  ({-1} is Tanh)

Weight norm: ``parametrizations.weight.original0`` (g) and ``original1`` (v), or the
legacy ``weight_g`` / ``weight_v``; conv kernels are transposed to channels-last
(``common.nn.conv``), linear weights to ``[in, out]``, Snake alphas ``[1, C, 1] -> [C]``.
Every tensor of the state dict must be used and every parameter filled: one error lists
every missing, misshaped and unexpected tensor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from flax import nnx

from common.nn.activations import Snake
from common.nn.conv import Conv, ConvTranspose
from tokenizer.snac.config import SnacModelConfig
from tokenizer.snac.layers import LocalMHA
from tokenizer.snac.model import SNAC

log = logging.getLogger(__name__)

WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors", "model.pt", "model.pth")
# Buffers the package keeps in its state dict that we compute instead (checked).
DERIVED = ("rel_pos.inv_freq",)


class ConversionError(ValueError):
    """The state dict does not fit the model; the message lists the offending names."""


def _pairs(model: SNAC) -> Iterator[tuple[str, nnx.Module]]:
    """``(torch prefix, our module)`` for every parameter-holding leaf module."""
    enc, dec = model.encoder, model.decoder

    def units(prefix, us, start):
        for j, u in enumerate(us):
            p = f"{prefix}.block.{start + j}.block"
            yield from ((f"{p}.0", u.act1), (f"{p}.1", u.conv1), (f"{p}.2", u.act2),
                        (f"{p}.3", u.conv2))

    yield "encoder.block.0", enc.conv_in
    for i, b in enumerate(enc.blocks):
        p = f"encoder.block.{i + 1}"
        yield from units(p, b.units, 0)
        yield f"{p}.block.3", b.act
        yield f"{p}.block.4", b.down.conv
    k = len(enc.blocks) + 1
    if enc.attn is not None:
        yield f"encoder.block.{k}", enc.attn
        k += 1
    yield f"encoder.block.{k}", enc.conv_out
    for i, q in enumerate(model.quantizer.levels):
        p = f"quantizer.quantizers.{i}"
        yield f"{p}.in_proj", q.in_proj
        yield f"{p}.out_proj", q.out_proj
        yield f"{p}.codebook", q
    k = 0
    for conv in dec.conv_in:
        yield f"decoder.model.{k}", conv
        k += 1
    if dec.attn is not None:
        yield f"decoder.model.{k}", dec.attn
        k += 1
    for b in dec.blocks:
        p = f"decoder.model.{k}"
        yield f"{p}.block.0", b.act
        yield f"{p}.block.1", b.up.conv
        start = 2
        if b.noise is not None:
            yield f"{p}.block.2.linear", b.noise.linear
            start = 3
        yield from units(p, b.units, start)
        k += 1
    yield f"decoder.model.{k}", dec.act
    yield f"decoder.model.{k + 1}", dec.conv_out


class _Reader:
    """Takes tensors out of a state dict, noting what is used and what is wrong, so that
    one ``ConversionError`` can name every problem at once."""

    def __init__(self, sd: Mapping[str, np.ndarray]):
        self.sd, self.used = sd, set()
        self.missing: list[str] = []
        self.misshaped: list[str] = []

    def get(self, *names: str) -> np.ndarray | None:
        for n in names:
            if n in self.sd:
                self.used.add(n)
                return np.asarray(self.sd[n])
        self.missing.append(names[0] + (f" (or {', '.join(names[1:])})"
                                        if len(names) > 1 else ""))
        return None

    def set(self, var: nnx.Variable, value: np.ndarray | None, name: str, fit=None) -> None:
        """``var[...] = fit(value)`` if the tensor exists and its shape fits."""
        if value is None:
            return
        value = fit(value) if fit is not None else value
        want = tuple(var[...].shape)
        if tuple(value.shape) != want:
            self.misshaped.append(f"{name} {tuple(value.shape)} (the model's: {want})")
            return
        var[...] = value.astype(np.float32)

    def check(self) -> None:
        unexpected = sorted(set(self.sd) - self.used)
        problems = [(f"{len(self.missing)} missing", self.missing),
                    (f"{len(self.misshaped)} of the wrong shape (wrong config for these "
                     "weights?)", self.misshaped),
                    (f"{len(unexpected)} with no place in the model", unexpected)]
        lines = [f"{head}: {', '.join(names)}" for head, names in problems if names]
        if lines:
            raise ConversionError("the state dict does not fit the model; tensors "
                                  + "; ".join(lines))


def load_state_dict(model: SNAC, sd: Mapping[str, np.ndarray]) -> SNAC:
    """Copy a PyTorch ``SNAC.state_dict()`` (name -> array) into ``model`` in place.
    Every tensor must find its parameter and every parameter its tensor; otherwise one
    ``ConversionError`` names all the missing, misshaped and unexpected tensors."""
    r = _Reader(sd)
    for prefix, m in _pairs(model):
        def get(*suffixes, p=prefix):
            return r.get(*[f"{p}.{s}" for s in suffixes])
        if isinstance(m, Conv | ConvTranspose):
            r.set(m.weight_g, get("parametrizations.weight.original0", "weight_g"),
                  f"{prefix} weight g", lambda g: g.reshape(-1))
            v = get("parametrizations.weight.original1", "weight_v")
            if v is not None and v.ndim != 3:
                r.misshaped.append(f"{prefix} weight v {v.shape} (a conv kernel is 3-d)")
                v = None
            r.set(m.weight_v, v, f"{prefix} weight v", m.from_torch_weight)
            if m.bias is not None:
                r.set(m.bias, get("bias"), f"{prefix}.bias")
        elif isinstance(m, Snake):
            r.set(m.alpha, get("alpha"), f"{prefix}.alpha", lambda a: a.reshape(-1))
        elif isinstance(m, LocalMHA):
            r.set(m.norm.scale, get("norm.weight"), f"{prefix}.norm.weight")
            r.set(m.norm.bias, get("norm.bias"), f"{prefix}.norm.bias")
            r.set(m.qkv.kernel, get("to_qkv.weight"), f"{prefix}.to_qkv.weight", _t)
            r.set(m.out.kernel, get("to_out.weight"), f"{prefix}.to_out.weight", _t)
            inv = sd.get(f"{prefix}.rel_pos.inv_freq")
            if inv is not None:
                r.used.add(f"{prefix}.rel_pos.inv_freq")
                ours = 1.0 / 10000 ** (np.arange(0, 64, 2, dtype=np.float32) / 64)
                if np.shape(inv) != ours.shape or not np.allclose(inv, ours, rtol=1e-6):
                    r.misshaped.append(f"{prefix}.rel_pos.inv_freq (differs from RoPE "
                                       "base 10000 over 64 dims)")
        else:  # a quantizer level's codebook
            r.set(m.codebook, get("weight"), f"{prefix}.weight")
    r.check()
    return model


def _t(w: np.ndarray) -> np.ndarray:
    """A torch ``Linear`` weight ``[out, in]`` as our kernel ``[in, out]``."""
    return w.T


def to_state_dict(model: SNAC) -> dict[str, np.ndarray]:
    """Our weights as the PyTorch package's state dict (weight-norm parametrisations),
    C-contiguous numpy arrays, e.g. to hand a fine-tuned model back to
    ``snac.SNAC.load_state_dict`` or to save as safetensors."""
    sd: dict[str, np.ndarray] = {}
    for prefix, m in _pairs(model):
        if isinstance(m, Conv | ConvTranspose):
            v = np.asarray(m.weight_v[...])
            g = np.asarray(m.weight_g[...])
            sd[f"{prefix}.parametrizations.weight.original0"] = g.reshape(-1, 1, 1)
            sd[f"{prefix}.parametrizations.weight.original1"] = m.to_torch_weight(v)
            if m.bias is not None:
                sd[f"{prefix}.bias"] = np.asarray(m.bias[...])
        elif isinstance(m, Snake):
            sd[f"{prefix}.alpha"] = np.asarray(m.alpha[...]).reshape(1, -1, 1)
        elif isinstance(m, LocalMHA):
            sd[f"{prefix}.norm.weight"] = np.asarray(m.norm.scale[...])
            sd[f"{prefix}.norm.bias"] = np.asarray(m.norm.bias[...])
            sd[f"{prefix}.to_qkv.weight"] = np.asarray(m.qkv.kernel[...]).T
            sd[f"{prefix}.to_out.weight"] = np.asarray(m.out.kernel[...]).T
            sd[f"{prefix}.rel_pos.inv_freq"] = (
                1.0 / 10000 ** (np.arange(0, 64, 2, dtype=np.float32) / 64))
        else:
            sd[f"{prefix}.weight"] = np.asarray(m.codebook[...])
    # C-contiguous copies: savers like safetensors write an array's buffer as it lies,
    # and the transposed kernels would otherwise come out scrambled.
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def find_weights(src: str | Path, config: str | Path | None = None
                 ) -> tuple[Path, SnacModelConfig]:
    """The weights file and the model config of a published model folder or file."""
    src = Path(src)
    if src.is_dir():
        weights = next((src / f for f in WEIGHT_FILES if (src / f).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{src}: no {' / '.join(WEIGHT_FILES)} in this folder")
        config = config or src / "config.json"
    elif src.is_file():
        weights = src
        config = config or src.parent / "config.json"
    else:
        raise FileNotFoundError(f"{src}: no such file or folder")
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the model's config.json is missing (pass "
                                "--config; it holds the SNAC(...) arguments)")
    try:
        cfg = SnacModelConfig.from_published(json.loads(config.read_text()))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{config}: {e}") from e
    return weights, cfg


def load_pretrained(src: str | Path, config: str | Path | None = None, *,
                    dtype: str = "float32") -> SNAC:
    """A ``SNAC`` with the published weights of ``src`` (see ``find_weights``)."""
    from common.train.torch_weights import load_torch_state_dict

    weights, cfg = find_weights(src, config)
    cfg = dataclasses.replace(cfg, dtype=dtype)
    model = SNAC(cfg, rngs=nnx.Rngs(0))  # every parameter is overwritten below
    try:
        return load_state_dict(model, load_torch_state_dict(weights))
    except ConversionError as e:
        raise ConversionError(f"{weights}: {e}") from e
