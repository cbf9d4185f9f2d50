"""Vocos weights from a PyTorch state dict (``vocos.Vocos``'s layout, as the published
``charactr/vocos-mel-24khz`` ``pytorch_model.bin`` holds it): ``backbone.*`` and
``head.*``; the feature extractor's buffers (``feature_extractor.*``: the mel
filterbank and window) and the head's window (``head.istft.window``) are recomputed
here, so they are skipped. Read the file with ``common.train.torch_weights`` (no torch).

    backbone.embed.weight [dim, n_mels, k]      -> backbone/embed/kernel [k, n_mels, dim]
    backbone.norm.{weight,bias}                 -> backbone/norm/{scale,bias}
    backbone.convnext.i.dwconv.weight [d, 1, k] -> .../dwconv/kernel [k, 1, d]
    backbone.convnext.i.pwconv{1,2}.weight      -> .../pwconv{1,2}/kernel (transposed)
    backbone.convnext.i.gamma                   -> .../gamma
    head.out.weight [n_fft + 2, dim]            -> head/out/kernel [dim, n_fft + 2]
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from flax import nnx

from common.nn.conv import conv_weight_from_torch
from worldmodel.audio.vocoder.config import VocosConfig
from worldmodel.audio.vocoder.vocos import Vocos

SKIPPED = re.compile(r"^(feature_extractor\.|head\.istft\.window$)")


def _target(key: str) -> tuple[str, str] | None:
    """``(our parameter path, how to convert)`` of a torch key, None if skipped."""
    if SKIPPED.match(key):
        return None
    path, leaf = key.rsplit(".", 1)
    path = path.replace(".", "/")
    conv = path.endswith(("embed", "dwconv"))
    norm = path.endswith(("norm", "final_layer_norm"))
    if leaf == "gamma":
        return key.replace(".", "/"), "copy"
    if leaf == "bias":
        return f"{path}/bias", "copy"
    if leaf != "weight":
        raise KeyError(key)
    if conv:
        return f"{path}/kernel", "conv"
    if norm:
        return f"{path}/scale", "copy"
    return f"{path}/kernel", "linear"


def state_from_torch(state_dict: Mapping[str, np.ndarray], cfg: VocosConfig) -> Vocos:
    """A ``Vocos`` of ``cfg`` holding ``state_dict``'s weights. Every parameter must be
    given once and every key used (apart from the skipped buffers); shapes must agree.
    Raises ``KeyError``/``ValueError`` naming the offending keys."""
    model = Vocos(cfg, rngs=nnx.Rngs(0))
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    ours = {"/".join(map(str, k)): v for k, v in params.items()}
    filled, unknown = {}, []
    for key, value in state_dict.items():
        try:
            target = _target(key)
        except KeyError:
            unknown.append(key)
            continue
        if target is None:
            continue
        path, how = target
        if path not in ours:
            unknown.append(key)
            continue
        w = np.asarray(value, np.float32)
        w = conv_weight_from_torch(w) if how == "conv" else w.T if how == "linear" else w
        if w.shape != ours[path][...].shape:
            raise ValueError(f"{key}: shape {w.shape} (converted) but {path} is "
                             f"{ours[path][...].shape}")
        filled[path] = w
    missing = sorted(set(ours) - set(filled))
    if unknown or missing:
        raise KeyError(f"Vocos state dict: unknown keys {unknown[:8]}, missing parameters "
                       f"{missing[:8]}")
    for path, var in ours.items():
        var[...] = filled[path]
    return model
