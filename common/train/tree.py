"""Naming the leaves of pytrees (parameter paths for freezing, GAN layer selection and
checkpoint shape checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax


def _key_str(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_to_str(path: Sequence[Any], sep: str = "/") -> str:
    """ "/"-joined names of a ``tree_flatten_with_path`` key path: ``"enc/layers/0/kernel"``.

    A trailing ``value`` key, the array slot inside an ``nnx.Variable`` (an attribute
    when walking a live State, a dict key in orbax's checkpoint metadata), is dropped,
    so a parameter has one name however its tree was walked.
    """
    keys = list(path)
    if keys and _key_str(keys[-1]) == "value" and isinstance(
            keys[-1], jax.tree_util.GetAttrKey | jax.tree_util.DictKey):
        keys = keys[:-1]
    return sep.join(_key_str(k) for k in keys)
