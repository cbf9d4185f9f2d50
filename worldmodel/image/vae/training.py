"""The image VAE's program: its loss on image batches, one AdamW; with ``adversarial``
(``--gan``) the GAN of ``common.train.gan`` with a PatchGAN over the images
(``common.nn.patchgan``), the VAE's loss as the reconstruction term."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from common.nn.patchgan import PatchGAN, patch_disc_fn
from common.train.gan import disc_optim, gan_program
from common.train.loop import resolve_optim
from common.train.optim import make_optimizer
from common.train.program import Program, supervised_program
from worldmodel.image.vae.config import ImageVaeConfig
from worldmodel.image.vae.loss import image_vae_loss
from worldmodel.image.vae.model import ImageVae


def reconstruct(model: ImageVae, batch, key: jax.Array, cfg: ImageVaeConfig):
    """One training pass on ``batch["image"] [B, S, S, C]`` -> ``(reconstruction,
    image, loss, metrics)``; counts the call (the KL warm-up's step)."""
    image = batch["image"]
    out = model(image, key=key)
    step = model.calls[...]
    model.calls[...] = step + 1
    loss, metrics = image_vae_loss(out, image, step, cfg.loss)
    return out.image, image, loss, metrics


def build_program(cfg: ImageVaeConfig) -> Program:
    """The supervised program of a config, or with ``cfg.adversarial`` the GAN."""
    build = lambda rngs: ImageVae(cfg.model, rngs=rngs)
    tx = make_optimizer(resolve_optim(cfg.train))
    if not cfg.adversarial:
        def loss_fn(model, batch, key):
            return reconstruct(model, batch, key, cfg)[2:]

        return supervised_program(build, loss_fn, tx, seed=cfg.train.seed,
                                  grad_accum=cfg.train.grad_accum)

    def gen_fn(model, batch, key):
        return reconstruct(model, batch, key, cfg)

    disc_tx = make_optimizer(disc_optim(cfg.train, cfg.disc_optim, cfg.gan))
    return gan_program(build, lambda rngs: PatchGAN(cfg.disc, rngs=rngs), gen_fn,
                       patch_disc_fn, tx, disc_tx, cfg.gan, seed=cfg.train.seed,
                       grad_accum=cfg.train.grad_accum)


EXAMPLES = 8  # held-out images in the logged reconstruction grid


def make_on_log(cfg: ImageVaeConfig, eval_data):
    """The loop's ``on_log``: the first held-out images over their reconstructions (the
    posterior's mean decoded), logged as ``vae/reconstructions`` (W&B and
    ``run_dir/media``) before training, at the end and every
    ``train.logging.audio_every`` steps."""
    from common.train.render import image_grid
    from tokenizer.codec.train_logging import first_batch

    images = np.asarray(first_batch(eval_data)["image"][:EXAMPLES])
    reconstruct_mean = nnx.jit(lambda model, x: model(x).image)

    def on_log(step, model, metrics, logger):
        if step in (0, cfg.train.steps) or logger.should_log_media(step):
            model.eval()
            rec = np.asarray(reconstruct_mean(model, images))
            logger.log_image(step, "vae/reconstructions", image_grid([images, rec]),
                             caption="held-out images (top) and reconstructions (bottom)")

    return on_log


def load_vae(run) -> tuple[ImageVae, ImageVaeConfig]:
    """A trained VAE (its EMA weights where the run kept them) and its config."""
    from common.config import config_from_dict
    from common.train.checkpoint import load_model

    model, d = load_model(run, lambda d: ImageVae(config_from_dict(ImageVaeConfig, d).model,
                                                  rngs=nnx.Rngs(0)), item=("ema", "model"))
    return model, config_from_dict(ImageVaeConfig, d)
