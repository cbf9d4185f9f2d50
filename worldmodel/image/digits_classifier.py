"""The small digits classifier that scores generated digits: class accuracy and the
features of a Frechet distance (``worldmodel.diffusion.frechet``).

Published FIDs use an Inception network trained on ImageNet; nothing is downloaded here,
so the generated digits are scored by a network trained here, on the training digits,
in seconds: its Frechet distances compare runs of this codebase with each other, not
with FIDs in papers (the README says so).

The network sees what a digit is, an 8x8 grey image: the input ``[B, S, S, C]`` in
[-1, 1] (``S`` a multiple of 8) is averaged over its channels and over ``S/8 x S/8``
blocks, then an MLP ``64 -> 128 -> 64 -> 10`` (SiLU); the 64 features before the last
layer are the Frechet features. Training is deterministic (a fixed seed, full passes
over the training images in a fixed shuffled order), so the same images give the same
classifier on a given machine and every run is scored by the same judge.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common.nn import axes as ax
from common.nn.linear import Linear
from worldmodel.diffusion.frechet import frechet_distance, gaussian_stats

GRID = 8  # the digits' own resolution: what the classifier looks at


@dataclasses.dataclass(frozen=True)
class DigitsClassifierConfig:
    hidden: int = 128
    features: int = 64
    classes: int = 10
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def to_grid(images: jax.Array) -> jax.Array:
    """``[B, S, S, C]`` in [-1, 1] -> grey ``[B, 64]`` block means (``S % 8 == 0``)."""
    b, h, w, _ = images.shape
    if h % GRID or w % GRID:
        raise ValueError(f"digits classifier: image sides must be multiples of {GRID}, "
                         f"got {h}x{w}")
    grey = jnp.asarray(images, jnp.float32).mean(-1)
    return grey.reshape(b, GRID, h // GRID, GRID, w // GRID).mean((2, 4)).reshape(b, -1)


class DigitsClassifier(nnx.Module):
    """``images [B, S, S, C]`` -> ``(features [B, F], logits [B, classes])``."""

    def __init__(self, cfg: DigitsClassifierConfig, *, rngs: nnx.Rngs):
        kw = dict(use_bias=True, rngs=rngs)
        self.hidden = Linear(GRID * GRID, cfg.hidden, axes=(ax.EMBED, ax.MLP), **kw)
        self.features = Linear(cfg.hidden, cfg.features, axes=(ax.MLP, ax.EMBED), **kw)
        self.head = Linear(cfg.features, cfg.classes, axes=(ax.EMBED, ax.VOCAB), **kw)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jax.nn.silu(self.hidden(to_grid(images)))
        f = jax.nn.silu(self.features(h))
        return f, self.head(f)


def train_classifier(images: np.ndarray, labels: np.ndarray,
                     cfg: DigitsClassifierConfig = DigitsClassifierConfig()
                     ) -> DigitsClassifier:
    """A classifier trained with AdamW on ``images [N, S, S, C]`` in [-1, 1] and
    ``labels [N]`` (cross-entropy, ``cfg.steps`` batches in one compiled scan)."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    n = len(images)
    if n < 2 or labels.shape != (n,):
        raise ValueError(f"train_classifier: needs >= 2 images and one label each, got "
                         f"{images.shape} images, {labels.shape} labels")
    # A fixed order: epochs of a seeded permutation, cut into batches.
    rng = np.random.default_rng(cfg.seed)
    batch = min(cfg.batch_size, n)
    epochs = -(-cfg.steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    order = order[:cfg.steps * batch].reshape(cfg.steps, batch)
    grid = np.asarray(to_grid(images))  # the classifier's input, computed once
    model = DigitsClassifier(cfg, rngs=nnx.Rngs(cfg.seed))
    tx = optax.adamw(optax.cosine_decay_schedule(cfg.lr, cfg.steps), weight_decay=cfg.weight_decay)
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p, idx):
        m = nnx.merge(graphdef, p)
        h = jax.nn.silu(m.hidden(jnp.asarray(grid)[idx]))
        logits = m.head(jax.nn.silu(m.features(h)))
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.asarray(labels)[idx]).mean()

    @jax.jit
    def run(p, order):
        def step(carry, idx):
            p, opt = carry
            g = jax.grad(loss)(p, idx)
            updates, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, updates), opt), None

        (p, _), _ = jax.lax.scan(step, (p, tx.init(p)), order)
        return p

    nnx.update(model, run(params, jnp.asarray(order)))
    return model


@nnx.jit
def _classify(model: DigitsClassifier, images: jax.Array):
    f, logits = model(images)
    return f, jnp.argmax(logits, -1)


def classify(model: DigitsClassifier, images, batch: int = 512
             ) -> tuple[np.ndarray, np.ndarray]:
    """``images [N, S, S, C]`` -> ``(features [N, F] float32, predicted classes [N])``."""
    images = np.asarray(images, np.float32)
    feats, preds = [], []
    for i in range(0, len(images), batch):
        f, p = _classify(model, jnp.asarray(images[i:i + batch]))
        feats.append(np.asarray(f))
        preds.append(np.asarray(p))
    return np.concatenate(feats), np.concatenate(preds)


class DigitsScorer:
    """Scores generated digits against real ones: a classifier trained on ``images [N, S,
    S, C]`` and ``labels [N]``, and the Gaussian of its features on those images (the
    Frechet distance's reference)."""

    def __init__(self, images, labels, cfg: DigitsClassifierConfig = DigitsClassifierConfig()):
        self.classifier = train_classifier(images, labels, cfg)
        feats, pred = classify(self.classifier, images)
        self.train_accuracy = float(np.mean(pred == np.asarray(labels)))
        self.reference = gaussian_stats(feats)

    def score(self, images, labels) -> dict[str, float]:
        """``{"class_accuracy", "frechet"}`` of ``images [N, S, S, C]`` meant to show
        ``labels [N]``."""
        feats, pred = classify(self.classifier, images)
        return {"class_accuracy": float(np.mean(pred == np.asarray(labels))),
                "frechet": frechet_distance(*gaussian_stats(feats), *self.reference)}
