"""The recurrent VAE's program: the image VAE's loss on every refinement step's image
(the mean over steps, so each step is pulled towards the image and the cell learns to
correct what the previous step left), one AdamW."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.image.recurrent_vae.config import RecurrentVaeConfig
from worldmodel.image.recurrent_vae.model import RecurrentImageVae
from worldmodel.image.vae.loss import image_vae_loss, psnr
from worldmodel.image.vae.model import ImageVaeOutput


def recurrent_loss(images: jax.Array, mean: jax.Array, logvar: jax.Array, target: jax.Array,
                   step: jax.Array, cfg: RecurrentVaeConfig
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The mean over steps of ``image_vae_loss`` of every estimate ``images [K, B, S, S,
    C]`` against ``target [B, S, S, C]`` (the KL, the same in each, counts once); metrics:
    the last step's, and ``vae/psnr_first`` (the first step's PSNR)."""
    k = images.shape[0]
    total, metrics = 0.0, {}
    for i in range(k):
        loss, metrics = image_vae_loss(ImageVaeOutput(images[i], mean, logvar), target, step,
                                       cfg.loss, ssim_metric=i == k - 1)
        total = total + loss / k
    metrics["vae/psnr_first"] = jnp.mean(psnr(images[0], target))
    return total, metrics


def build_program(cfg: RecurrentVaeConfig) -> Program:
    def loss_fn(model: RecurrentImageVae, batch, key):
        image = batch["image"]
        out = model(image, key=key)
        step = model.calls[...]
        model.calls[...] = step + 1
        return recurrent_loss(out.images, out.mean, out.logvar, image, step, cfg)

    return supervised_program(lambda rngs: RecurrentImageVae(cfg.model, rngs=rngs), loss_fn,
                              make_optimizer(resolve_optim(cfg.train)), seed=cfg.train.seed,
                              grad_accum=cfg.train.grad_accum)


EXAMPLES = 8  # held-out images in the logged grid


def make_on_log(cfg: RecurrentVaeConfig, eval_data):
    """The loop's ``on_log``: held-out images over every refinement step's estimate
    (``vae/refinements``), before training, every ``train.logging.audio_every`` steps
    and at the end."""
    from common.train.render import image_grid
    from tokenizer.codec.train_logging import first_batch

    images = np.asarray(first_batch(eval_data)["image"][:EXAMPLES])
    steps = nnx.jit(lambda model, x: model.decode_steps(model.encode(x)[0]))

    def on_log(step, model, metrics, logger):
        if step in (0, cfg.train.steps) or logger.should_log_media(step):
            model.eval()
            xs = np.clip(np.asarray(steps(model, images)), -1, 1)
            logger.log_image(step, "vae/refinements", image_grid([images, *xs]),
                             caption="held-out images (top), then refinement steps 1..K")

    return on_log


def load_recurrent_vae(run) -> tuple[RecurrentImageVae, RecurrentVaeConfig]:
    """A trained recurrent VAE (EMA weights where kept) and its config."""
    from common.config import config_from_dict
    from common.train.checkpoint import load_model

    model, d = load_model(run, lambda d: RecurrentImageVae(
        config_from_dict(RecurrentVaeConfig, d).model, rngs=nnx.Rngs(0)), item=("ema", "model"))
    return model, config_from_dict(RecurrentVaeConfig, d)
