"""Linear probes: how much of a label a frozen representation exposes to a linear
classifier (the disentanglement SIVE buys, as a number).

A multinomial logistic regression on standardised features, with an L2 penalty on the
weights (scikit-learn's ``LogisticRegression(C=1)`` objective: ``sum CE + ||W||^2 / 2``),
fitted to convergence by L-BFGS on the whole (small) set at once. Scoring is two-fold
within each class: every label's examples alternate between the halves, each half is
scored by the probe fitted on the other, so every example is scored once and no class
is unseen at fitting time.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    accuracy: float
    """share of the scored examples whose label the probe names."""
    chance: float
    """the accuracy of always naming the most frequent label of the fitting half."""
    examples: int
    classes: int


@functools.partial(jax.jit, static_argnames=("k", "iters"))
def _lbfgs_fit(z: jax.Array, labels: jax.Array, l2: jax.Array, *, k: int, iters: int
               ) -> dict[str, jax.Array]:
    """``iters`` L-BFGS steps on ``sum CE + l2 ||W||^2 / 2`` from zero weights; one
    compile per shape (module-level, so repeated probes reuse it)."""

    def loss(p):
        logits = z @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.sum(ce) + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

    params = {"w": jnp.zeros((z.shape[1], k), jnp.float32),
              "b": jnp.zeros((k,), jnp.float32)}
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(_, carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad,
                                    value_fn=loss)
        return optax.apply_updates(params, updates), state

    return jax.lax.fori_loop(0, iters, body, (params, opt.init(params)))[0]


def fit_linear_probe(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iters: int = 300
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x [N, D]``, integer ``y [N]`` -> ``(mean [D], std [D], W [D, K], b [K])`` of the
    probe ``argmax(((x - mean) / std) @ W + b)``, ``K = y.max() + 1``."""
    x = np.asarray(x, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-8
    z = jnp.asarray((x - mean) / std, jnp.float32)
    params = _lbfgs_fit(z, jnp.asarray(y, jnp.int32), jnp.float32(l2),
                        k=int(np.max(y)) + 1, iters=iters)
    return mean, std, np.asarray(params["w"]), np.asarray(params["b"])


def probe_accuracy(x: np.ndarray, labels: list[str] | np.ndarray,
                   groups: np.ndarray | None = None, *, l2: float = 1.0) -> ProbeResult:
    """Two-fold (within each label) accuracy of a linear probe of ``labels`` from
    ``x [N, D]``. ``groups [N]`` (default: each example its own) keep examples together
    in one fold, e.g. the frames of one utterance, so the probe is never scored on an
    utterance it was fitted on. Labels with a single group are left out (they cannot
    be both fitted and scored)."""
    labels = np.asarray(labels)
    names, y = np.unique(labels, return_inverse=True)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    fold = np.zeros(len(y), np.int32)
    keep = np.zeros(len(y), bool)
    for c in range(len(names)):
        rows = y == c
        ids, first = np.unique(groups[rows], return_index=True)
        ids = ids[np.argsort(first)]  # alternate in order of appearance
        if len(ids) >= 2:
            order = {g: i for i, g in enumerate(ids.tolist())}
            fold[rows] = [order[g] % 2 for g in groups[rows].tolist()]
            keep |= rows
    if keep.sum() < 4 or len(np.unique(y[keep])) < 2:
        raise ValueError(f"a speaker probe needs two labels with two examples each; got "
                         f"{len(labels)} examples of {len(names)} labels")
    correct, chance, scored = 0, 0.0, 0
    for f in (0, 1):
        fit, score = keep & (fold != f), keep & (fold == f)
        mean, std, w, b = fit_linear_probe(x[fit], y[fit], l2=l2)
        logits = ((x[score] - mean) / std) @ w + b
        pred = np.argmax(logits, axis=1)
        correct += int(np.sum(pred == y[score]))
        majority = np.bincount(y[fit]).argmax()
        chance += float(np.sum(y[score] == majority))
        scored += int(score.sum())
    return ProbeResult(correct / scored, chance / scored, scored, len(np.unique(y[keep])))
