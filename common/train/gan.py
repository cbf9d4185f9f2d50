"""Adversarial training as reusable pieces: a generator and a discriminator with their
own optimizers, updated alternately inside one jitted step.

The model supplies two functions:

* ``gen_fn(generator, batch, key) -> (fake, real, rec_loss, rec_metrics[, valid])``:
  the generator's forward pass and its non-adversarial (reconstruction) loss; ``fake``
  and ``real`` ``[B, N, ...]``; ``valid`` (optional, bool ``[B, N]``) marks the real
  samples of a padded batch (left out or None: every sample is valid);
* ``disc_fn(discriminator, x, valid) -> (logits, features[, masks])``: lists over
  sub-discriminators (MPD periods, MSD scales, STFT resolutions) of logits and of
  feature-map lists; ``valid`` is ``gen_fn``'s (or None) and ``masks``, None or
  ``(logit_masks, feature_masks)`` nested as the outputs, say which output positions
  come from valid samples (``tokenizer.codec.discriminators.gan_disc_fn``).

Padding does not train either model: the step zeroes the padded samples of both
discriminator inputs (after the instance noise), so their content cannot reach any
output, and every adversarial, feature-matching and R1 term averages over the valid
positions of ``masks`` only.

Per step: (1) the generator's loss ``rec + w * (adv + feature_weight * fm)`` against the
current discriminator, with one forward pass and, for the VQGAN-style adaptive weight,
two backward passes (``w = adv_weight * ||grad_last rec|| / ||grad_last adv||``);
(2) the discriminator's update on the same (stop-gradient) fake, plus an optional R1
penalty on real data. Instance noise, annealed to zero, is added to both of the
discriminator's inputs. Until the discriminator starts (a step, or the reconstruction
loss falling below a threshold; once started it stays on) the adversarial weight is 0
and the discriminator's state is left untouched, its optimizer state included: the
discriminator's learning-rate schedule counts its own updates, so it starts at the
schedule's step 0 when the discriminator does (``disc_optim`` sets the decay length
to the steps left after ``disc_start_step``). With ``train.grad_accum > 1`` both
updates average their gradients over micro-batches (a ``lax.scan``, as the supervised
step does).

EMA weights (``GANConfig.ema_decay > 0``): the state keeps an exponential moving average
of the generator's parameters, updated after every step (``ema = d * ema + (1 - d) *
params``, starting from the initial parameters); it is checkpointed as the item
``"ema"`` and used for evaluation, the logging hooks and inference
(``CodecTokenizer.from_run`` prefers it).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from common.losses.adversarial import (
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from common.losses.r1 import r1_penalty
from common.train.configs import GANConfig, OptimizerConfig, TrainConfig
from common.train.program import Program
from common.train.step import TrainState, apply_gradients, make_train_step, split_micro
from common.train.tree import path_to_str

GenFn = Callable[[nnx.Module, Any, jax.Array], tuple]
DiscFn = Callable[[nnx.Module, jax.Array, jax.Array | None], tuple]

_LOSSES = {"hinge": (hinge_g_loss, hinge_d_loss), "lsgan": (lsgan_g_loss, lsgan_d_loss)}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class GANState:
    gen: TrainState
    disc: TrainState
    started: jax.Array  # bool []: the discriminator has started (latched)
    # EMA of the generator's parameters (an nnx.State like gen.params); {} when off.
    ema: Any = dataclasses.field(default_factory=dict)


def disc_optim(train: TrainConfig, optim: OptimizerConfig, gan: GANConfig) -> OptimizerConfig:
    """The discriminator's optimizer config with ``total_steps`` (when unset) the steps
    left after ``gan.disc_start_step``: its schedule counts its own updates, which begin
    there, so a decaying schedule ends with the run rather than part-way."""
    if optim.total_steps is not None:
        return optim
    total = max(train.steps - gan.disc_start_step, optim.warmup_steps + 1)
    return dataclasses.replace(optim, total_steps=total)


def _unpack_gen(out: tuple):
    """``gen_fn``'s result as ``(fake, real, rec, metrics, valid or None)``."""
    if len(out) == 4:
        return (*out, None)
    if len(out) == 5:
        return tuple(out)
    raise ValueError(f"gen_fn must return (fake, real, rec_loss, metrics[, valid]), got "
                     f"{len(out)} values")


def _expand(valid: jax.Array | None, x: jax.Array) -> jax.Array | None:
    """``valid [B, N]`` as bool, broadcastable to ``x [B, N, ...]``."""
    if valid is None:
        return None
    return jnp.asarray(valid, bool).reshape(valid.shape + (1,) * (x.ndim - valid.ndim))


def _zero_padding(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    """``x [B, N, ...]`` with the samples outside ``valid [B, N]`` set to 0."""
    if valid is None:
        return x
    return jnp.where(_expand(valid, x), x, jnp.zeros((), x.dtype))


def _disc_pair(disc_fn: DiscFn, disc: nnx.Module, a: jax.Array, b: jax.Array,
               valid: jax.Array | None):
    """``disc_fn`` on ``a`` and ``b`` (both with the valid mask ``valid``) as one batch
    ``[a; b]``, split back: one trace and one launch of every discriminator layer instead
    of two (discriminators here hold no batch statistics, so the halves do not interact).
    Returns ``((logits_a, feats_a), (logits_b, feats_b), masks)``: the masks (of the
    ``a`` half; both halves share them) or None."""
    n = a.shape[0]
    both_valid = None if valid is None else jnp.concatenate([valid, valid], axis=0)
    out = disc_fn(disc, jnp.concatenate([a, b], axis=0), both_valid)
    if len(out) not in (2, 3):
        raise ValueError(f"disc_fn must return (logits, features[, masks]), got {len(out)} "
                         "values")
    logits, feats = out[:2]
    masks = out[2] if len(out) == 3 else None
    first = lambda x: x[:n]
    second = lambda x: x[n:]
    if masks is not None:
        masks = jax.tree.map(first, masks)
    return ((jax.tree.map(first, logits), jax.tree.map(first, feats)),
            (jax.tree.map(second, logits), jax.tree.map(second, feats)), masks)


def _split_masks(masks):
    """``masks`` (None or ``(logit_masks, feature_masks)``) as the two loss arguments."""
    return (None, None) if masks is None else (list(masks[0]), list(masks[1]))


def _norm_of(tree: Any, pattern: str) -> jax.Array:
    if not pattern:
        return optax.tree.norm(tree)
    rx = re.compile(pattern)
    leaves = [x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
              if rx.search(path_to_str(path))]
    if not leaves:
        raise ValueError(f"gan.last_layer={pattern!r} matches no generator parameter")
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in leaves))


def make_gan_step(
    gen_graphdef: nnx.GraphDef,
    disc_graphdef: nnx.GraphDef,
    gen_fn: GenFn,
    disc_fn: DiscFn,
    gen_tx: optax.GradientTransformation,
    disc_tx: optax.GradientTransformation,
    cfg: GANConfig = GANConfig(),
    *,
    grad_accum: int = 1,
) -> Callable[[GANState, Any], tuple[GANState, dict[str, jax.Array]]]:
    """The pure GAN step ``(state, batch) -> (state, metrics)`` (see module doc).

    With ``grad_accum > 1`` the batch (leading axis ``B``) is split into ``grad_accum``
    strided micro-batches of ``B / grad_accum`` (as the supervised step does); both
    models' gradients and all metrics are averaged over them in one ``lax.scan``, so the
    step equals the full-batch step when every loss is a mean over examples. Micro-batch
    ``i`` draws its keys from ``fold_in(key, i)``.
    """
    if grad_accum < 1:
        raise ValueError(f"train.grad_accum must be >= 1, got {grad_accum}")
    g_adv_loss, d_adv_loss = _LOSSES[cfg.loss]
    # The adversarial weight multiplies the generator's adversarial gradient. Unless it
    # is known before the gradients are (no adaptive weight, and a start latch that does
    # not wait for the step's reconstruction loss, which accumulation only knows at the
    # end), the two gradients are kept apart and combined after the scan.
    separate = cfg.adaptive_weight or (grad_accum > 1 and cfg.disc_start_loss is not None)

    def merge(graphdef, ts: TrainState, params=None, rest=None) -> nnx.Module:
        return nnx.merge(graphdef, ts.params if params is None else params,
                         ts.rest if rest is None else rest, copy=True)

    def step(state: GANState, batch: Any) -> tuple[GANState, dict[str, jax.Array]]:
        t = state.gen.step
        key = jax.random.fold_in(state.gen.rng, t)
        if cfg.instance_noise_steps:
            noise_std = cfg.instance_noise * jnp.maximum(0.0, 1.0 - t / cfg.instance_noise_steps)
        else:
            noise_std = jnp.float32(cfg.instance_noise)
        noisy = lambda k, x: x + noise_std * jax.random.normal(k, x.shape, x.dtype)

        def start_latch(rec: jax.Array) -> jax.Array:
            return state.started | ((t >= cfg.disc_start_step) & (
                True if cfg.disc_start_loss is None else rec < cfg.disc_start_loss))

        def micro_step(gen_rest, disc_rest, micro, key):
            """Both models' gradients and metrics on one (micro-)batch, against the
            discriminator as it was before the step."""
            k_gen, k_real, k_fake = jax.random.split(key, 3)

            # -- generator ----------------------------------------------------------------
            disc = merge(disc_graphdef, state.disc)

            def gen_losses(params):
                gen = merge(gen_graphdef, state.gen, params, gen_rest)
                fake, real, rec, rec_metrics, valid = _unpack_gen(gen_fn(gen, micro, k_gen))
                (logits_f, feats_f), (_, feats_r), masks = _disc_pair(
                    disc_fn, disc, _zero_padding(noisy(k_fake, fake), valid),
                    _zero_padding(noisy(k_real, real), valid), valid)
                logit_masks, feat_masks = _split_masks(masks)
                adv, adv_m = g_adv_loss(logits_f, masks=logit_masks)
                fm, fm_m = feature_matching_loss(feats_r, feats_f, masks=feat_masks)
                per_disc = {**{f"adv/{k}": v for k, v in adv_m.items() if k != "loss"},
                            **{f"fm/{k}": v for k, v in fm_m.items() if k != "loss"}}
                aux = (fake, real, valid, {**rec_metrics, **per_disc}, adv, fm,
                       nnx.state(gen, nnx.Not(nnx.Param)))
                return (rec, adv + cfg.feature_weight * fm), aux

            (rec, gan_term), pullback, aux = jax.vjp(gen_losses, state.gen.params,
                                                     has_aux=True)
            fake, real, valid, rec_metrics, adv, fm, gen_rest = aux
            if separate:
                g_grads = (pullback((jnp.ones_like(rec), jnp.zeros_like(gan_term)))[0],
                           pullback((jnp.zeros_like(rec), jnp.ones_like(gan_term)))[0])
            else:
                weight = cfg.adv_weight * start_latch(rec)
                g_grads = pullback((jnp.ones_like(rec), weight * jnp.ones_like(gan_term)))[0]

            # -- discriminator ------------------------------------------------------------
            fake_sg, real_sg = jax.lax.stop_gradient(fake), jax.lax.stop_gradient(real)

            def disc_loss(params):
                d = merge(disc_graphdef, state.disc, params, disc_rest)
                (logits_r, _), (logits_f, _), masks = _disc_pair(
                    disc_fn, d, _zero_padding(noisy(k_real, real_sg), valid),
                    _zero_padding(noisy(k_fake, fake_sg), valid), valid)
                logit_masks, _ = _split_masks(masks)
                loss, m = d_adv_loss(logits_r, logits_f, masks=logit_masks)
                if cfg.r1_weight:
                    def valid_logits(x):
                        out = disc_fn(d, x, valid)
                        if len(out) < 3 or out[2] is None:
                            return out[0]
                        return [jnp.where(mk, lg, jnp.zeros((), lg.dtype))
                                for lg, mk in zip(out[0], out[2][0], strict=True)]

                    r1, r1_m = r1_penalty(valid_logits, _zero_padding(real_sg, valid),
                                          mask=_expand(valid, real_sg))
                    loss = loss + 0.5 * cfg.r1_weight * r1
                    m = {**m, "r1": r1_m["r1"]}
                return loss, (m, nnx.state(d, nnx.Not(nnx.Param)))

            (d_loss, (d_m, disc_rest)), d_grads = jax.value_and_grad(
                disc_loss, has_aux=True)(state.disc.params)

            metrics = {f"gen/{k}": v for k, v in rec_metrics.items()}
            metrics.update({f"disc/{k}": v for k, v in d_m.items()})
            metrics.update({"gen/rec_loss": rec, "gen/gan_term": gan_term, "gen/adv_loss": adv,
                            "gen/feature_loss": fm, "disc/loss": d_loss})
            metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
            return g_grads, d_grads, gen_rest, disc_rest, metrics

        if grad_accum == 1:
            g_grads, d_grads, gen_rest, disc_rest, m = micro_step(
                state.gen.rest, state.disc.rest, batch, key)
        else:
            def body(carry, xs):
                g_acc, d_acc, gen_rest, disc_rest = carry
                micro, i = xs
                g, d, gen_rest, disc_rest, m = micro_step(gen_rest, disc_rest, micro,
                                                          jax.random.fold_in(key, i))
                return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, d_acc, d),
                        gen_rest, disc_rest), m

            g_zeros = jax.tree.map(jnp.zeros_like, state.gen.params)
            g_zeros = (g_zeros, jax.tree.map(jnp.zeros_like, g_zeros)) if separate else g_zeros
            d_zeros = jax.tree.map(jnp.zeros_like, state.disc.params)
            (g_grads, d_grads, gen_rest, disc_rest), ms = jax.lax.scan(
                body, (g_zeros, d_zeros, state.gen.rest, state.disc.rest),
                (split_micro(batch, grad_accum), jnp.arange(grad_accum)))
            g_grads, d_grads = jax.tree.map(lambda g: g / grad_accum, (g_grads, d_grads))
            m = jax.tree.map(lambda x: jnp.mean(x, axis=0), ms)

        rec, gan_term = m.pop("gen/rec_loss"), m.pop("gen/gan_term")
        started = start_latch(rec)
        if cfg.adaptive_weight:
            g_rec, g_gan = g_grads
            ratio = _norm_of(g_rec, cfg.last_layer) / (_norm_of(g_gan, cfg.last_layer) + 1e-4)
            weight = cfg.adv_weight * jax.lax.stop_gradient(
                jnp.clip(ratio, 0.0, cfg.adaptive_max)) * started
        else:
            weight = cfg.adv_weight * started
        if separate:
            g_grads = jax.tree.map(lambda a, b: a + weight * b, *g_grads)
        g_loss = rec + weight * gan_term
        gen_state, g_upd = apply_gradients(state.gen, g_grads, g_loss, gen_rest, gen_tx)
        disc_state, d_upd = apply_gradients(state.disc, d_grads, m["disc/loss"], disc_rest,
                                            disc_tx, enabled=started)
        ema = state.ema
        if cfg.ema_decay:
            d = cfg.ema_decay
            ema = jax.tree.map(lambda e, p: e + (1.0 - d) * (p - e), state.ema,
                               gen_state.params)

        m.update({
            "loss": g_loss, "gen/rec_loss": rec, "gen/adv_weight": weight,
            "disc/started": started, "instance_noise": noise_std,
            **{f"gen/{k}": v for k, v in g_upd.items()},
            **{f"disc/{k}": v for k, v in d_upd.items()},
        })
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in m.items()}
        return GANState(gen=gen_state, disc=disc_state, started=started, ema=ema), metrics

    return step


def make_gan_warmup_step(gen_graphdef: nnx.GraphDef, gen_fn: GenFn,
                         gen_tx: optax.GradientTransformation, cfg: GANConfig, *,
                         grad_accum: int = 1) -> Callable:
    """The step before the discriminator starts: the generator's reconstruction loss
    alone, the discriminator neither run nor updated (its step counter advances, as
    the full step's skipped update does). It gives the full step's update while the
    adversarial weight is 0, at the cost of the generator alone, and compiles without
    the discriminator: a run that never starts it never compiles it."""

    def loss_fn(gen, batch, key):
        # the key the full step hands gen_fn (fold_in(rng, t), then its first split)
        _, _, rec, metrics, _ = _unpack_gen(gen_fn(gen, batch, jax.random.split(key, 3)[0]))
        return rec, metrics

    gen_step = make_train_step(gen_graphdef, loss_fn, gen_tx, grad_accum=grad_accum)

    def step(state: GANState, batch: Any) -> tuple[GANState, dict[str, jax.Array]]:
        gen, m = gen_step(state.gen, batch)
        ema = state.ema
        if cfg.ema_decay:
            d = cfg.ema_decay
            ema = jax.tree.map(lambda e, p: e + (1.0 - d) * (p - e), state.ema, gen.params)
        disc = dataclasses.replace(state.disc, step=state.disc.step + 1)
        metrics = {("loss" if k == "loss" else f"gen/{k}"): v for k, v in m.items()}
        metrics.update({"gen/rec_loss": m["loss"], "disc/started": jnp.float32(0.0)})
        return GANState(gen=gen, disc=disc, started=state.started, ema=ema), metrics

    return step


def gan_program(
    build_gen: Callable[[nnx.Rngs], nnx.Module],
    build_disc: Callable[[nnx.Rngs], nnx.Module],
    gen_fn: GenFn,
    disc_fn: DiscFn,
    gen_tx: optax.GradientTransformation,
    disc_tx: optax.GradientTransformation,
    cfg: GANConfig = GANConfig(),
    *,
    seed: int = 0,
    grad_accum: int = 1,
) -> Program:
    """A ``Program`` for ``common.train.loop.train``: checkpoint items ``model`` (the
    generator, what ``load_model`` restores), ``disc``, ``train`` (both optimizers,
    steps, RNG, the start latch) and, with ``cfg.ema_decay``, ``ema`` (the generator with
    its EMA parameters). Evaluation reports the generator's reconstruction metrics in
    eval mode, with the EMA parameters when there are some. ``grad_accum``:
    micro-batches per step (``train.grad_accum``)."""

    def init() -> GANState:
        gen = TrainState.create(build_gen(nnx.Rngs(seed)), gen_tx, jax.random.key(seed + 1))[1]
        disc = TrainState.create(build_disc(nnx.Rngs(seed + 2)), disc_tx,
                                 jax.random.key(seed + 3))[1]
        # A copy, not the same buffers: the state is donated to the step.
        ema = jax.tree.map(jnp.copy, gen.params) if cfg.ema_decay else {}
        return GANState(gen=gen, disc=disc, started=jnp.zeros((), bool), ema=ema)

    key = jax.random.key(0)
    gen_gd = TrainState.create(nnx.eval_shape(lambda: build_gen(nnx.Rngs(seed))), gen_tx, key)[0]
    disc_gd = TrainState.create(nnx.eval_shape(lambda: build_disc(nnx.Rngs(seed))), disc_tx,
                                key)[0]

    def inference_params(state: GANState):
        return state.ema if cfg.ema_decay else state.gen.params

    def evaluate(state: GANState, batch: Any, key: jax.Array) -> dict[str, jax.Array]:
        gen = nnx.merge(gen_gd, inference_params(state), state.gen.rest, copy=True)
        gen.eval()
        _, _, rec, metrics, _ = _unpack_gen(gen_fn(gen, batch, key))
        return {**{k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()},
                "loss": jnp.asarray(rec, jnp.float32)}

    def to_items(s: GANState) -> dict[str, Any]:
        items = {"model": s.gen.model_state(), "disc": s.disc.model_state(),
                 "train": {"gen": s.gen.train_items(), "disc": s.disc.train_items(),
                           "started": s.started}}
        if cfg.ema_decay:
            items["ema"] = nnx.merge_state(s.ema, s.gen.rest)
        return items

    def from_items(items: dict[str, Any]) -> GANState:
        t = items["train"]
        ema = nnx.split_state(items["ema"], nnx.Param, ...)[0] if cfg.ema_decay else {}
        return GANState(gen=TrainState.from_items(items["model"], t["gen"]),
                        disc=TrainState.from_items(items["disc"], t["disc"]),
                        started=t["started"], ema=ema)

    # Before a fixed start step the cheaper generator-only step runs (with a start that
    # waits on the loss too, the full step must watch the loss, so there is none).
    warmup = cfg.disc_start_step if cfg.disc_start_loss is None else 0
    return Program(
        init=init,
        step=make_gan_step(gen_gd, disc_gd, gen_fn, disc_fn, gen_tx, disc_tx, cfg,
                           grad_accum=grad_accum),
        warmup_step=(make_gan_warmup_step(gen_gd, gen_fn, gen_tx, cfg, grad_accum=grad_accum)
                     if warmup else None),
        warmup_steps=warmup,
        evaluate=evaluate,
        to_items=to_items,
        from_items=from_items,
        model=lambda s: nnx.merge(gen_gd, inference_params(s), s.gen.rest),
        nonfinite_run=lambda s: jnp.maximum(s.gen.nonfinite_run, s.disc.nonfinite_run),
        nonfinite_total=lambda s: s.gen.nonfinite_total + s.disc.nonfinite_total,
        grad_accum=grad_accum,
    )
