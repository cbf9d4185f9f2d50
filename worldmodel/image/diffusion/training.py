"""Image diffusion's program: a denoiser on the latents of a frozen image VAE, one AdamW
over the denoiser alone, and the samples it draws while it trains.

The VAE is loaded from its run into the trained module and frozen (the optimizer leaves
``vae/`` out and its latents are cut from the gradient; ``worldmodel.diffusion.
latent_program``); it is checkpointed with the denoiser, so the diffusion run alone
rebuilds everything sampling needs. Latents are
normalised per channel, ``(z - mean) / std``, with statistics of the VAE's posterior
means over the first ``latent_batches`` training batches (latent diffusion's scale
factor, per channel), stored in the module.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.train.program import Program
from worldmodel.diffusion.conditioning import drop_condition
from worldmodel.diffusion.dit import DiT
from worldmodel.diffusion.latent_program import frozen_upstream_program
from worldmodel.diffusion.objectives import make_objective
from worldmodel.diffusion.samplers import guided, sample
from worldmodel.diffusion.sampling_config import SamplingConfig
from worldmodel.diffusion.unet import UNet
from worldmodel.image.diffusion.config import ImageDiffusionConfig
from worldmodel.image.vae.model import ImageVae


class ImageDiffusionTrainee(nnx.Module):
    """The denoiser, the frozen VAE and the latent statistics."""

    def __init__(self, cfg: ImageDiffusionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.vae = ImageVae(cfg.vae, rngs=rngs)
        self.vae.eval()
        self.denoiser = (DiT(cfg.dit, rngs=rngs) if cfg.denoiser == "dit"
                         else UNet(cfg.unet, rngs=rngs))
        c = cfg.vae.latent_channels
        self.latent_mean = nnx.Variable(jnp.zeros((c,), jnp.float32))
        self.latent_std = nnx.Variable(jnp.ones((c,), jnp.float32))

    def encode(self, image: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``image [B, S, S, 3]`` -> normalised latents ``[B, S/f, S/f, Z]``: a sample of
        the posterior (``key`` given) or its mean; no gradient to the VAE."""
        mean, logvar = self.vae.encode(image)
        z = mean
        if key is not None:  # logvar comes clamped from ImageVae.encode
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        z = (z - self.latent_mean[...]) / self.latent_std[...]
        return jax.lax.stop_gradient(z)

    def decode(self, x: jax.Array) -> jax.Array:
        """Normalised latents ``[B, h, w, Z]`` -> images ``[B, S, S, 3]`` clipped to [-1, 1]."""
        z = x * self.latent_std[...] + self.latent_mean[...]
        return jnp.clip(self.vae.decode(z).astype(jnp.float32), -1.0, 1.0)


def make_loss(cfg: ImageDiffusionConfig):
    """``loss_fn(model, batch, key)``: the objective's loss on the batch's latents, the
    condition (the label) dropped with ``net.cond_dropout`` for classifier-free guidance."""
    objective = make_objective(cfg.objective)
    net = cfg.net

    def loss_fn(model: ImageDiffusionTrainee, batch, key):
        k_z, k_t, k_n, k_d = jax.random.split(key, 4)
        x0 = model.encode(batch["image"], k_z if cfg.posterior_sample else None)
        t = objective.sample_time(k_t, x0.shape[0])
        noise = jax.random.normal(k_n, x0.shape, jnp.float32)
        cond = None
        if net.num_classes:
            cond = drop_condition({"class": batch["label"]}, k_d, net.cond_dropout)
        pred = model.denoiser(objective.corrupt(x0, noise, t), t, cond)
        return objective.loss(pred, x0, noise, t)

    return loss_fn


def latent_stats(cfg: ImageDiffusionConfig, vae: ImageVae) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean [Z], std [Z])`` of the VAE's posterior means over the first
    ``latent_batches`` training batches (a fresh pipeline: the same on every start)."""
    from worldmodel.image.diffusion.data import make_data

    encode = nnx.jit(lambda vae, x: vae.encode(x)[0])
    train, _ = make_data(cfg)
    try:
        zs = [np.asarray(encode(vae, jnp.asarray(b["image"])))
              for b in itertools.islice(train, cfg.latent_batches)]
    finally:
        train.close()
    z = np.concatenate(zs).reshape(-1, cfg.vae.latent_channels).astype(np.float64)
    return z.mean(0).astype(np.float32), np.maximum(z.std(0), 1e-6).astype(np.float32)


def load_vae_state(cfg: ImageDiffusionConfig) -> nnx.State:
    """The trained VAE's weights (EMA where kept) from the config's ``vae_run``."""
    from worldmodel.image.vae.training import load_vae

    vae, _ = load_vae(cfg.vae_run)
    return nnx.state(vae)


def build_program(cfg: ImageDiffusionConfig, vae: nnx.State | None = None) -> Program:
    """The supervised program of a resolved config; ``vae`` (default: loaded from
    ``cfg.vae_run``) holds the frozen autoencoder's weights."""
    if not cfg.vae_run:
        raise ValueError("build_program needs the VAE run: resolve_data(cfg) first")
    return frozen_upstream_program(
        lambda rngs: ImageDiffusionTrainee(cfg, rngs=rngs), "vae",
        load_vae_state(cfg) if vae is None else vae, lambda m: latent_stats(cfg, m.vae),
        make_loss(cfg), cfg.train)


def generate(model: ImageDiffusionTrainee, cfg: ImageDiffusionConfig, labels, key: jax.Array,
             sampling: SamplingConfig | None = None) -> np.ndarray:
    """Images ``[N, S, S, 3]`` in [-1, 1] drawn for the classes ``labels [N]`` (an
    unconditioned denoiser ignores their values, not their count), from noise of
    ``key``, with ``sampling`` (default: the config's)."""
    sampling = sampling or cfg.sampling
    labels = jnp.asarray(labels, jnp.int32)
    return np.asarray(_generate(model, labels, key, cfg.objective, sampling))


@nnx.jit(static_argnames=("objective", "sampling"))
def _generate(model: ImageDiffusionTrainee, labels: jax.Array, key: jax.Array,
              objective: str, sampling: SamplingConfig) -> jax.Array:
    net = model.denoiser.cfg
    x1 = jax.random.normal(key, (labels.shape[0], *latent_shape(model)), jnp.float32)
    cond = {"class": labels} if net.num_classes else None
    fn = lambda x, t, c: model.denoiser(x, t, c)
    if cond is not None and sampling.guidance != 1.0:
        fn = guided(fn, sampling.guidance)
    z = sample(make_objective(objective), fn, x1, sampling.steps,
               sampling.sampler or None, cond=cond)
    return model.decode(z)


def latent_shape(model: ImageDiffusionTrainee) -> tuple[int, int, int]:
    """One example's normalised latent ``(h, w, Z)`` at the training image size."""
    cfg = model.cfg
    side = cfg.data.train.size // cfg.vae.downsample
    return side, side, cfg.vae.latent_channels


def sample_labels(cfg: ImageDiffusionConfig, per_class: int) -> np.ndarray:
    """``[classes * per_class]``: every class ``per_class`` times, class-major (the
    unconditioned denoiser: ``10 * per_class`` zeros)."""
    classes = cfg.net.num_classes
    return np.repeat(np.arange(classes or 1), per_class if classes else 10 * per_class)


def sample_grid(images: np.ndarray, labels: np.ndarray, columns: int = 8) -> np.ndarray:
    """The first ``columns`` samples of each class (fewer if a class has fewer) as one
    row per class (uint8)."""
    from common.train.render import image_grid

    classes = np.unique(labels)
    columns = min(columns, *(int(np.sum(labels == c)) for c in classes))
    return image_grid([images[labels == c][:columns] for c in classes])


SAMPLE_SEED = 1234  # the logged samples start from the same noise at every step


def make_on_log(cfg: ImageDiffusionConfig, eval_data):
    """The loop's ``on_log``: at the start, every ``eval_every`` steps and at the end,
    draw ``per_class`` samples per class, log them as a grid
    (``diffusion/samples``) and, on a labelled set, their class accuracy and Frechet
    distance under the digits classifier (``gen/class_accuracy``, ``gen/frechet``)."""
    del eval_data
    scorer = make_scorer(cfg)
    labels = sample_labels(cfg, cfg.per_class)
    key = jax.random.key(SAMPLE_SEED)

    def on_log(step, model, metrics, logger):
        every = cfg.train.eval_every
        if not (step in (0, cfg.train.steps) or (every and step % every == 0)):
            return
        model.eval()
        images = generate(model, cfg, labels, key)
        logger.log_image(step, "diffusion/samples", sample_grid(images, labels),
                         caption="samples, one row per class")
        if scorer is not None:
            logger.log_scalars(step, {f"gen/{k}": v
                                      for k, v in scorer.score(images, labels).items()})

    return on_log


def make_scorer(cfg: ImageDiffusionConfig):
    """The digits scorer (``digits_classifier.DigitsScorer``) trained on the training
    digits, or None for an unlabelled set."""
    if not cfg.net.num_classes or cfg.data.train.source != "digits":
        return None
    from worldmodel.image.diffusion.data import split_arrays
    from worldmodel.image.digits_classifier import DigitsScorer

    return DigitsScorer(*split_arrays(cfg.data, "train"))
