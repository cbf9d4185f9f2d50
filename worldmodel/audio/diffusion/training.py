"""Audio diffusion's program: a 1-D DiT on the latents of a frozen audio CVAE,
conditioned on the speaker embedding, one AdamW over the denoiser alone; and what it
logs while it trains: generated mels scored against the held-out speech.

The CVAE (with its frozen SIVE content encoder and speaker encoder) is loaded from its
run into the trained module, frozen (the optimizer leaves ``cvae/`` out, its outputs
are cut from the gradient) and checkpointed with the denoiser. Latents ``[B, T4, Z]``
are normalised per channel with statistics of the first ``latent_batches`` training
batches' posterior means over valid frames; padded frames are masked out of the loss
and out of the DiT's attention keys.

The mel statistics distance: the Frechet distance between Gaussians fitted to the
valid log-mel frames (``n_mels``-dimensional) of generated and of real held-out
speech. A generated utterance is a sampled latent decoded with a held-out utterance's
content, F0 and speaker (the words and speaker are given; the latent, what the CVAE
leaves to it, is generated). Floors and ceilings logged with it: the CVAE's
reconstructions (posterior means) and decodes of the prior's samples N(0, I).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.speech.features import log_mel_frames
from common.train.program import Program
from worldmodel.audio.cvae.model import latent_valid
from worldmodel.audio.cvae.training import CvaeTrainee
from worldmodel.audio.diffusion.config import AudioDiffusionConfig
from worldmodel.diffusion.conditioning import drop_condition
from worldmodel.diffusion.dit import DiT
from worldmodel.diffusion.frechet import feature_frechet
from worldmodel.diffusion.latent_program import frozen_upstream_program
from worldmodel.diffusion.objectives import make_objective
from worldmodel.diffusion.samplers import guided, sample


class AudioDiffusionTrainee(nnx.Module):
    """The denoiser, the frozen CVAE (with its encoders) and the latent statistics."""

    def __init__(self, cfg: AudioDiffusionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.cvae = CvaeTrainee(cfg.cvae, rngs=rngs)
        self.cvae.eval()
        self.denoiser = DiT(cfg.dit, rngs=rngs)
        z = cfg.cvae.model.latent_dim
        self.latent_mean = nnx.Variable(jnp.zeros((z,), jnp.float32))
        self.latent_std = nnx.Variable(jnp.ones((z,), jnp.float32))

    def inputs(self, batch) -> dict[str, jax.Array]:
        """A CVAE batch -> ``mel [B, T, F]``, ``valid [B, T]``, ``content [B, T4, C]``,
        ``speaker [B, S]`` (unit length), the posterior ``mean, logvar [B, T4, Z]`` and
        ``latent_valid [B, T4]``; no gradient to the CVAE."""
        mel, valid, content, speaker = self.cvae.conditioning(
            batch["audio"], batch["audio_lengths"], batch.get("sive_features"),
            batch.get("speaker_embedding"))
        mean, logvar, v4 = self.cvae.cvae.encode(mel, valid)
        out = dict(mel=mel, valid=valid, content=content, speaker=speaker, mean=mean,
                   logvar=logvar, latent_valid=v4)
        return jax.tree.map(jax.lax.stop_gradient, out)

    def latents(self, batch) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """``(mean, logvar [B, T4, Z], latent_valid [B, T4], speaker [B, S])``: from the
        batch's ``cvae_latents`` and ``speaker_embedding`` where precomputed (only the
        frame mask is computed), else through the frozen CVAE (``inputs``)."""
        if "cvae_latents" not in batch:
            inp = self.inputs(batch)
            return inp["mean"], inp["logvar"], inp["latent_valid"], inp["speaker"]
        _, valid = log_mel_frames(self.cfg.cvae.features, batch["audio"],
                                  batch["audio_lengths"])
        mean, logvar = jnp.split(jnp.asarray(batch["cvae_latents"], jnp.float32), 2, -1)
        emb = jnp.asarray(batch["speaker_embedding"], jnp.float32)
        emb = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-6)
        return mean, logvar, latent_valid(valid), emb

    def normalise(self, z: jax.Array, valid: jax.Array) -> jax.Array:
        x = (z - self.latent_mean[...]) / self.latent_std[...]
        return jnp.where(valid[..., None], x, 0.0)

    def decode(self, x: jax.Array, inputs: dict, f0, voiced) -> jax.Array:
        """Normalised latents ``[B, T4, Z]`` -> mel ``[B, T, F]`` with the batch's
        content, F0 and speaker."""
        z = jnp.where(inputs["latent_valid"][..., None],
                      x * self.latent_std[...] + self.latent_mean[...], 0.0)
        return self.cvae.cvae.decode(z, inputs["content"], inputs["valid"],
                                     inputs["speaker"], f0, voiced)


def make_loss(cfg: AudioDiffusionConfig):
    objective = make_objective(cfg.objective)

    def loss_fn(model: AudioDiffusionTrainee, batch, key):
        k_z, k_t, k_n, k_d = jax.random.split(key, 4)
        z, logvar, v4, speaker = model.latents(batch)
        if cfg.posterior_sample:
            z = z + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, z.shape)
        x0 = model.normalise(z, v4)
        t = objective.sample_time(k_t, x0.shape[0])
        noise = jax.random.normal(k_n, x0.shape, jnp.float32)
        cond = drop_condition({"vector": speaker}, k_d, cfg.dit.cond_dropout)
        pred = model.denoiser(objective.corrupt(x0, noise, t), t, cond, valid=v4)
        return objective.loss(pred, x0, noise, t, v4[..., None])

    return loss_fn


def latent_stats(cfg: AudioDiffusionConfig, model: AudioDiffusionTrainee
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean [Z], std [Z])`` of the posterior means over the valid frames
    of the first ``latent_batches`` training batches (a fresh pipeline)."""
    from worldmodel.audio.diffusion.data import make_data

    means = nnx.jit(lambda m, b: (lambda mean, _, valid, __: (mean, valid))(*m.latents(b)))
    train, _ = make_data(cfg)
    zs = []
    try:
        for batch in itertools.islice(train, cfg.latent_batches):
            mean, valid = means(model, {k: jnp.asarray(v) for k, v in batch.items()})
            zs.append(np.asarray(mean)[np.asarray(valid)])
    finally:
        train.close()
    z = np.concatenate(zs).astype(np.float64)
    return z.mean(0).astype(np.float32), np.maximum(z.std(0), 1e-6).astype(np.float32)


def load_cvae_state(cfg: AudioDiffusionConfig) -> nnx.State:
    """The CVAE run's whole trained module (CVAE and frozen encoders)."""
    from common.train.checkpoint import load_model

    model, _ = load_model(cfg.vae_run, lambda d: CvaeTrainee(cfg.cvae, rngs=nnx.Rngs(0)))
    return nnx.state(model)


def build_program(cfg: AudioDiffusionConfig, cvae: nnx.State | None = None) -> Program:
    """The supervised program of a resolved config; ``cvae`` (default: loaded from
    ``cfg.vae_run``) holds the frozen CVAE's state."""
    if not cfg.vae_run:
        raise ValueError("build_program needs the CVAE run: resolve_data(cfg) first")
    return frozen_upstream_program(
        lambda rngs: AudioDiffusionTrainee(cfg, rngs=rngs), "cvae",
        load_cvae_state(cfg) if cvae is None else cvae, lambda m: latent_stats(cfg, m),
        make_loss(cfg), cfg.train)


@nnx.jit(static_argnames=("cfg",))
def generate_batch(model: AudioDiffusionTrainee, batch, key: jax.Array,
                   cfg: AudioDiffusionConfig) -> dict[str, jax.Array]:
    """For a held-out batch: ``mel`` (real), ``valid``, and the mels decoded from
    ``generated`` latents (sampled for the batch's speakers and lengths), from the
    ``posterior`` means and from ``prior`` samples N(0, I), ``[B, T, F]`` each."""
    inp = model.inputs(batch)
    v4 = inp["latent_valid"]
    k_x, k_p = jax.random.split(key)
    x1 = jax.random.normal(k_x, inp["mean"].shape, jnp.float32)
    cond = {"vector": inp["speaker"]}

    def fn(x, t, c):
        return model.denoiser(x, t, c, valid=v4)

    if cfg.sampling.guidance != 1.0:
        fn = guided(fn, cfg.sampling.guidance)
    x0 = sample(make_objective(cfg.objective), fn, x1, cfg.sampling.steps,
                cfg.sampling.sampler or None, cond=cond)
    f0, voiced = batch["f0"], batch["voiced"]
    prior = jax.random.normal(k_p, inp["mean"].shape, jnp.float32)
    return {"mel": inp["mel"], "valid": inp["valid"],
            "generated": model.decode(x0, inp, f0, voiced),
            "posterior": model.decode(model.normalise(inp["mean"], v4), inp, f0, voiced),
            "prior": model.cvae.cvae.decode(jnp.where(v4[..., None], prior, 0.0),
                                            inp["content"], inp["valid"], inp["speaker"],
                                            f0, voiced)}


SAMPLE_SEED = 1234


def mel_statistics(model: AudioDiffusionTrainee, cfg: AudioDiffusionConfig, batches
                   ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The mel statistics distance of generated, reconstructed and prior-decoded mels to
    the real ones over ``batches`` (``{"mel_frechet", "recon_mel_frechet",
    "prior_mel_frechet"}``), and the first batch's outputs."""
    frames: dict[str, list] = {}
    first = None
    for i, batch in enumerate(batches):
        out = generate_batch(model, {k: jnp.asarray(v) for k, v in batch.items()},
                             jax.random.fold_in(jax.random.key(SAMPLE_SEED), i), cfg)
        out = {k: np.asarray(v) for k, v in out.items()}
        first = first or out
        valid = out["valid"]
        for name in ("mel", "generated", "posterior", "prior"):
            frames.setdefault(name, []).append(out[name][valid])
    f = {k: np.concatenate(v) for k, v in frames.items()}
    return ({"mel_frechet": feature_frechet(f["generated"], f["mel"]),
             "recon_mel_frechet": feature_frechet(f["posterior"], f["mel"]),
             "prior_mel_frechet": feature_frechet(f["prior"], f["mel"])}, first)


def make_on_log(cfg: AudioDiffusionConfig, eval_data):
    """The loop's ``on_log``: at the start, every ``eval_every`` steps and at the end, the
    mel statistics distances over ``sample_batches`` held-out batches
    (``gen/mel_frechet``, ``gen/recon_mel_frechet``, ``gen/prior_mel_frechet``), the
    first generated mel as a spectrogram and, with ``vocoder_run``, as audio."""
    vocoder = None
    if cfg.vocoder_run:
        from worldmodel.audio.vocoder.training import load_generator, mel_to_wave

        generator, _ = load_generator(cfg.vocoder_run)
        vocoder = nnx.jit(mel_to_wave, static_argnums=3)

    def on_log(step, model, metrics, logger):
        every = cfg.train.eval_every
        if not (step in (0, cfg.train.steps) or (every and step % every == 0)):
            return
        model.eval()
        batches = list(itertools.islice(iter(eval_data()), cfg.sample_batches))
        scores, first = mel_statistics(model, cfg, batches)
        logger.log_scalars(step, {f"gen/{k}": v for k, v in scores.items()})
        valid = first["valid"][0]
        logger.log_spectrogram(step, "diffusion/generated_mel", first["generated"][0][valid])
        if vocoder is not None:
            n = batches[0]["audio"].shape[1]
            wav, lengths = vocoder(generator, jnp.asarray(first["generated"][:1]),
                                   jnp.asarray(first["valid"][:1]), n)
            wav = np.asarray(wav)[0, n - int(lengths[0]):]
            logger.log_audio(step, "diffusion/generated", wav, cfg.cvae.features.sample_rate)

    return on_log
