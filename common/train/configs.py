"""A training run's settings, as plain frozen dataclasses: the loop's (``TrainConfig``)
and those of its parts (mesh, optimizer, checkpoints, logging, GAN).

They live apart from the code that uses them (``common.train.loop``, ``mesh``,
``optim``, ``checkpoint``, ``logging``, ``gan``, which re-export them) so that a command
line can build and check its config, and print ``--help``, without importing jax, optax,
orbax or wandb. Nothing here imports more than the standard library.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, Literal

MESH_AXES = ("data", "fsdp", "tensor")
GAN_LOSSES = ("hinge", "lsgan")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape; one entry may be -1 to take the remaining devices."""

    data: int = -1
    """Data-parallel axis size (batch split, parameters replicated)."""
    fsdp: int = 1
    """Fully-sharded data-parallel axis size (batch and parameters split)."""
    tensor: int = 1
    """Tensor-parallel axis size (parameters split within layers)."""

    def __post_init__(self):
        sizes = (self.data, self.fsdp, self.tensor)
        if sum(s == -1 for s in sizes) > 1:
            raise ValueError(f"mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
        for name, s in zip(MESH_AXES, sizes, strict=True):
            if s == 0 or s < -1:
                raise ValueError(f"mesh.{name} must be a positive size or -1, got {s}")

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        """Resolve -1 against ``n_devices``; error if the sizes do not multiply to it."""
        sizes = [self.data, self.fsdp, self.tensor]
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if n_devices % known:
                raise ValueError(f"mesh {tuple(sizes)}: {n_devices} devices are not divisible "
                                 f"by the fixed axes' product {known}")
            sizes[sizes.index(-1)] = n_devices // known
        if math.prod(sizes) != n_devices:
            raise ValueError(f"mesh data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]} needs "
                             f"{math.prod(sizes)} devices, but {n_devices} are available")
        return tuple(sizes)


AUTO = "auto"
DEFAULT_CLIP_NORM = 1.0  # clip_norm="auto" for the optimizers without their own clipping
OptimizerName = Literal["adamw", "adam", "sgd", "scaled_adam"]
ScheduleName = Literal["constant", "cosine", "linear", "eden"]
GrokfastName = Literal["none", "ema", "ma"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer, schedule, clipping, Grokfast filter and frozen parameters.

    Schedules (step = optax count, from 0): ``constant``, ``cosine`` and ``linear`` warm
    up linearly from 0 to ``lr`` over ``warmup_steps``; cosine/linear then decay to
    ``lr * min_lr_ratio`` at ``total_steps`` (required for them, checked by
    ``make_schedule`` so a run config can fill it in late) and stay there. ``eden`` is
    icefall's Eden: its warm-up goes from ``eden_warmup_start * lr`` to ``lr`` over
    ``warmup_steps``.

    ``weight_decay`` is decoupled (AdamW; ``lr * wd * p``, as PyTorch) for ``adamw`` and
    added to the gradient for ``sgd``; by default it skips parameters with fewer than 2
    dims (norm scales, biases, scalars), ``decay_1d=True`` decays them too. ``adam`` and
    ``scaled_adam`` take no weight decay (ScaledAdam learns parameter scales instead).

    ``clip_norm`` clips the global gradient norm before the optimizer. Its default,
    ``"auto"``, is 1.0 for adamw, adam and sgd and no clip for ``scaled_adam``, which
    clips by its own rule (``clipping_scale`` times the median recent norm): a global
    clip in front of it would rescale the very norms its median tracks. Both at once
    (a number with ``scaled_adam`` and ``clipping_scale`` set) is refused; with
    ``clipping_scale=None`` ScaledAdam takes the global clip (``"auto"``: 1.0).

    ``freeze``: regular expressions, ``re.search``-ed against "/"-joined parameter paths
    (e.g. ``"encoder/.*"``); matching parameters get zero updates and no optimizer
    state. A pattern that matches nothing is an error.
    """

    name: OptimizerName = "adamw"
    """Which optimizer: adamw, adam, sgd or scaled_adam (icefall's ScaledAdam)."""
    lr: float = 3e-4
    """Peak learning rate."""
    schedule: ScheduleName = "cosine"
    """Learning-rate schedule: constant, cosine, linear (all with linear warm-up) or eden."""
    warmup_steps: int = 0
    """Steps of warm-up (from 0 to lr; for eden from eden_warmup_start * lr)."""
    total_steps: int | None = None
    """Step at which cosine/linear reach lr * min_lr_ratio (None: the run fills it in)."""
    min_lr_ratio: float = 0.0
    """Final learning rate of cosine/linear as a fraction of lr."""
    b1: float = 0.9
    """Adam's first-moment decay."""
    b2: float = 0.999
    """Adam's second-moment decay."""
    eps: float = 1e-8
    """Adam's denominator epsilon (also ScaledAdam's)."""
    weight_decay: float = 0.0
    """Decoupled weight decay for adamw, added to the gradient for sgd."""
    decay_1d: bool = False
    """Also decay parameters with fewer than 2 dims (norm scales, biases)."""
    sgd_momentum: float = 0.0
    """Heavy-ball momentum of sgd (0: none)."""
    clip_norm: float | Literal["auto"] | None = "auto"
    """Clip the global gradient norm to this (None: never; auto: 1.0, none for scaled_adam)."""
    grokfast: GrokfastName = "none"
    """Grokfast gradient filter: none, ema or ma (moving average over a window)."""
    grokfast_alpha: float = 0.98
    """Decay of Grokfast's gradient EMA."""
    grokfast_lamb: float = 2.0
    """Weight of the filtered (slow) gradient added to the gradient."""
    grokfast_window: int = 100
    """Gradients averaged by Grokfast's ma filter."""
    freeze: tuple[str, ...] = ()
    """Regexes on '/'-joined parameter paths that get no updates and no optimizer state."""
    # Eden (icefall) schedule
    eden_lr_batches: float = 5000.0
    """Eden's step constant B: the rate falls as ((b^2 + B^2) / B^2)^-0.25."""
    eden_lr_epochs: float = 6.0
    """Eden's epoch constant E: the rate falls as ((e^2 + E^2) / E^2)^-0.25."""
    eden_steps_per_epoch: int | None = None
    """Steps per Eden epoch (fractional epochs; None: no epoch factor)."""
    eden_warmup_start: float = 0.5
    """Eden's warm-up starts at this fraction of lr."""
    # ScaledAdam (icefall)
    scalar_lr_scale: float = 0.1
    """ScaledAdam: learning-rate factor for scalars and for the learned scales."""
    param_min_rms: float = 1e-5
    """ScaledAdam: parameter RMS floor of the update size and the scale learning."""
    param_max_rms: float = 3.0
    """ScaledAdam: parameter RMS above which the learned scale stops growing."""
    scalar_max: float = 10.0
    """ScaledAdam: scalar parameters are clipped to [-scalar_max, scalar_max]."""
    clipping_scale: float | None = 2.0
    """ScaledAdam: clip gradients at this times the median recent norm (None: off)."""
    clipping_update_period: int = 100
    """ScaledAdam: steps between refreshes of the clipping threshold."""
    size_update_period: int = 4
    """ScaledAdam: steps between updates of the learned parameter scales."""
    scaled_adam_betas: tuple[float, float] = (0.9, 0.98)
    """ScaledAdam's (beta1, beta2)."""

    def __post_init__(self):
        # Files and the CLI may hand over lists, or a lone pattern as a string.
        if isinstance(self.freeze, str):
            object.__setattr__(self, "freeze", (self.freeze,))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "scaled_adam_betas", tuple(self.scaled_adam_betas))

        hints = typing.get_type_hints(type(self))
        for name in ("name", "schedule", "grokfast"):
            allowed = typing.get_args(hints[name])
            if getattr(self, name) not in allowed:
                fail_optimizer(name, getattr(self, name), f"one of {list(allowed)}")

        _check(self, "lr", self.lr > 0, "> 0")
        _check(self, "warmup_steps", self.warmup_steps >= 0, ">= 0")
        if self.total_steps is not None:
            _check(
                self,
                "total_steps",
                self.total_steps > self.warmup_steps,
                f"> warmup_steps ({self.warmup_steps})",
            )
        _check(self, "min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "in [0, 1]")
        _check(self, "b1", 0.0 <= self.b1 < 1.0, "in [0, 1)")
        _check(self, "b2", 0.0 <= self.b2 < 1.0, "in [0, 1)")
        _check(self, "eps", self.eps > 0, "> 0")
        _check(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        if self.weight_decay > 0 and self.name not in ("adamw", "sgd"):
            fail_optimizer(
                "weight_decay",
                self.weight_decay,
                f"0 with name={self.name!r} (decay needs name 'adamw' or 'sgd')",
            )
        _check(self, "sgd_momentum", 0.0 <= self.sgd_momentum < 1.0, "in [0, 1)")
        if self.clip_norm is not None and self.clip_norm != AUTO:
            _check(self, "clip_norm", not isinstance(self.clip_norm, str)
                   and self.clip_norm > 0, f"> 0, {AUTO!r} or None")
            if self.name == "scaled_adam" and self.clipping_scale is not None:
                fail_optimizer(
                    "clip_norm", self.clip_norm,
                    f"{AUTO!r} or None with name='scaled_adam' and clipping_scale="
                    f"{self.clipping_scale} (ScaledAdam clips itself; set clipping_scale "
                    "None to use a global clip instead)")
        _check(self, "grokfast_alpha", 0.0 <= self.grokfast_alpha < 1.0, "in [0, 1)")
        _check(self, "grokfast_window", self.grokfast_window >= 1, ">= 1")
        for pattern in self.freeze:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as e:
                fail_optimizer("freeze", pattern, f"valid regular expressions ({e})")
        _check(self, "eden_lr_batches", self.eden_lr_batches > 0, "> 0")
        _check(self, "eden_lr_epochs", self.eden_lr_epochs > 0, "> 0")
        if self.eden_steps_per_epoch is not None:
            _check(self, "eden_steps_per_epoch", self.eden_steps_per_epoch > 0, "> 0 or None")
        _check(self, "eden_warmup_start", 0.0 <= self.eden_warmup_start <= 1.0, "in [0, 1]")
        _check(self, "scalar_lr_scale", self.scalar_lr_scale > 0, "> 0")
        _check(self, "param_min_rms", self.param_min_rms > 0, "> 0")
        _check(
            self,
            "param_max_rms",
            self.param_max_rms > self.param_min_rms,
            f"> param_min_rms ({self.param_min_rms})",
        )
        _check(self, "scalar_max", self.scalar_max > 0, "> 0")
        if self.clipping_scale is not None:
            _check(self, "clipping_scale", self.clipping_scale > 0, "> 0 or None")
        _check(self, "clipping_update_period", self.clipping_update_period >= 1, ">= 1")
        _check(self, "size_update_period", self.size_update_period >= 1, ">= 1")
        betas = self.scaled_adam_betas
        _check(
            self,
            "scaled_adam_betas",
            len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas),
            "two values in [0, 1)",
        )


    @property
    def global_clip_norm(self) -> float | None:
        """The global-norm clip ``make_optimizer`` applies (``clip_norm`` resolved)."""
        if self.clip_norm != AUTO:
            return self.clip_norm
        if self.name == "scaled_adam" and self.clipping_scale is not None:
            return None
        return DEFAULT_CLIP_NORM


def fail_optimizer(field: str, value: Any, allowed: str):
    """The error for an invalid ``OptimizerConfig`` field (``make_schedule`` raises it too)."""
    raise ValueError(f"OptimizerConfig.{field} must be {allowed}, got {value!r}")


def _check(cfg: OptimizerConfig, field: str, ok: bool, allowed: str) -> None:
    if not ok:
        fail_optimizer(field, getattr(cfg, field), allowed)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """When and what to keep.

    Attributes:
      every: save every N steps (0: only at the end and on SIGTERM).
      keep: number of latest checkpoints kept.
      keep_best: additionally keep this many best checkpoints by ``best_metric``.
      best_metric: the metric name ranked for ``keep_best`` (e.g. "eval/loss").
      best_mode: whether lower ("min") or higher ("max") is better.
      async_save: write in the background while training continues.
    """

    every: int = 500
    keep: int = 3
    keep_best: int = 1
    best_metric: str = "eval/loss"
    best_mode: Literal["min", "max"] = "min"
    async_save: bool = True

    def __post_init__(self):
        if self.every < 0 or self.keep < 1 or self.keep_best < 0:
            raise ValueError("checkpoint.every >= 0, checkpoint.keep >= 1 and "
                             f"checkpoint.keep_best >= 0 required, got {self}")
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"checkpoint.best_mode must be 'min' or 'max', got {self.best_mode!r}")


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """W&B mode; the WANDB_MODE environment variable, when set, wins."""
    project: str = "trc"
    """W&B project name."""
    entity: str | None = None
    """W&B entity (user or team; None: the account's default)."""
    run_name: str | None = None
    """Display name in W&B (default: the run directory's name)."""
    log_every: int = 10
    """Steps between scalar logs (metrics are pulled to the host only then)."""
    audio_every: int = 0
    """Steps between audio/image logs; 0 = never."""
    profile_steps: tuple[int, int] | None = None
    """(start, stop) steps of a jax.profiler trace written to <run_dir>/profile."""
    progress: bool = True
    """Progress bar on a TTY; otherwise one console line per log step."""

    def __post_init__(self):
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.audio_every < 0:
            raise ValueError(f"audio_every must be >= 0, got {self.audio_every}")
        if self.profile_steps is not None:
            start, stop = self.profile_steps
            if not 0 <= start < stop:
                raise ValueError(f"profile_steps must be (start, stop) with 0 <= start < stop, "
                                 f"got {self.profile_steps}")


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Adversarial-training settings.

    Attributes:
      loss: "lsgan" (HiFi-GAN / DAC) or "hinge".
      adv_weight: weight of the generator's adversarial loss.
      feature_weight: weight of discriminator feature matching (inside the adversarial
        term, so the adaptive weight scales both).
      disc_start_step: no adversarial training before this step.
      disc_start_loss: additionally wait until the reconstruction loss is below this.
      adaptive_weight: VQGAN's ``||grad rec|| / (||grad adv|| + 1e-4)`` on the
        parameters matching ``last_layer`` (a regex on "/"-joined paths; "" = all),
        clipped to ``[0, adaptive_max]``.
      last_layer: regex on "/"-joined parameter paths whose gradients set the adaptive
        weight ("" = all parameters).
      adaptive_max: upper clip of the adaptive weight.
      r1_weight: gamma of the R1 penalty (``gamma / 2 * E||grad_x D(x)||^2`` on reals).
      instance_noise: std of Gaussian noise added to the discriminator's inputs,
        annealed linearly to 0 over ``instance_noise_steps`` (0: constant).
      instance_noise_steps: steps over which the instance noise anneals to 0 (0: it
        stays constant).
      ema_decay: keep an exponential moving average of the generator's parameters with
        this decay per step (e.g. 0.999; 0: none). The EMA weights are checkpointed
        (item ``"ema"``) and used for evaluation and inference.
    """

    loss: Literal["lsgan", "hinge"] = "lsgan"
    adv_weight: float = 1.0
    feature_weight: float = 2.0
    disc_start_step: int = 0
    disc_start_loss: float | None = None
    adaptive_weight: bool = False
    last_layer: str = ""
    adaptive_max: float = 1e4
    r1_weight: float = 0.0
    instance_noise: float = 0.0
    instance_noise_steps: int = 0
    ema_decay: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"gan.ema_decay must be in [0, 1) (0: no EMA), got {self.ema_decay}")
        if self.loss not in GAN_LOSSES:
            raise ValueError(f"gan.loss must be one of {sorted(GAN_LOSSES)}, got {self.loss!r}")
        for name in ("adv_weight", "feature_weight", "disc_start_step", "r1_weight",
                     "instance_noise", "instance_noise_steps", "adaptive_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"gan.{name} must be >= 0, got {getattr(self, name)}")


# The discriminator's optimizer as VQGAN and latent diffusion train their PatchGANs:
# Adam(0.5, 0.9) at a constant 2e-4 (the image VAE's and the audio CVAE's default).
PATCHGAN_OPTIM = OptimizerConfig(name="adamw", lr=2e-4, b1=0.5, b2=0.9, schedule="constant",
                                 weight_decay=0.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The loop's settings (models embed this in their own config).

    Attributes:
      steps: total optimizer steps of the run (a resumed run continues to this).
      seed: seeds parameter initialisation and the step RNG.
      grad_accum: micro-batches per step (the batch is split; gradients averaged).
      eval_every: evaluate every N steps (0: never).
      eval_batches: batches per evaluation.
      eval_at_start: also evaluate (and call ``on_log``, so media are logged) before the
        first step of a fresh run: the "before" point of the curve and of the samples.
      max_nonfinite: stop after this many consecutive skipped (NaN/Inf) updates.
      stop_check_seconds: multi-process runs agree on stopping (SIGTERM/SIGINT on any
        process) about this often, in wall-clock seconds, whatever the step time: well
        inside a preemption notice (~30 s on TPU) with the checkpoint save after it.
        One process checks its signal every step at no cost.
      run_dir: parent directory of runs.
      run_name: this run's subdirectory (default: a timestamp; with ``resume`` and no
        name, the newest run in run_dir).
      resume: continue from the run's latest checkpoint.
    """

    steps: int = 1000
    seed: int = 0
    grad_accum: int = 1
    eval_every: int = 0
    eval_batches: int = 4
    eval_at_start: bool = False
    max_nonfinite: int = 20
    stop_check_seconds: float = 5.0
    run_dir: str = "runs"
    run_name: str | None = None
    resume: bool = False
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    optim: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)

    def __post_init__(self):
        for name in ("steps", "grad_accum", "eval_batches", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"train.eval_every must be >= 0, got {self.eval_every}")
        if not self.stop_check_seconds > 0:
            raise ValueError("train.stop_check_seconds must be > 0, got "
                             f"{self.stop_check_seconds}")
