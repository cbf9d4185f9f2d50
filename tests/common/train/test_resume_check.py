"""What resuming with other settings changes about the learning-rate schedules."""

import dataclasses

from common.config import config_to_dict
from common.train.configs import GANConfig, OptimizerConfig, TrainConfig
from common.train.resume_check import schedule_changes


@dataclasses.dataclass(frozen=True)
class RunConfig:
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    disc_optim: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    gan: GANConfig = dataclasses.field(default_factory=GANConfig)


def _changes(saved: RunConfig, current: RunConfig) -> list[str]:
    return schedule_changes(config_to_dict(saved), config_to_dict(current))


def test_raising_steps_stretches_a_schedule_that_follows_them():
    saved = RunConfig(train=TrainConfig(steps=1000))
    more = RunConfig(train=TrainConfig(steps=2000))
    changes = _changes(saved, more)
    assert changes == [
        "train.optim: total_steps 1000 -> 2000 (unset: follows train.steps)",
        "disc_optim: total_steps 1000 -> 2000 (unset: follows train.steps)"]
    assert _changes(saved, saved) == []


def test_pinned_or_step_free_schedules_are_left_alone():
    pinned = OptimizerConfig(total_steps=1000)
    saved = RunConfig(train=TrainConfig(steps=1000, optim=pinned), disc_optim=pinned)
    assert _changes(saved, dataclasses.replace(
        saved, train=TrainConfig(steps=5000, optim=pinned))) == []
    # constant and eden schedules do not depend on the number of steps
    for schedule in ("constant", "eden"):
        optim = OptimizerConfig(schedule=schedule)
        a = RunConfig(train=TrainConfig(steps=10, optim=optim), disc_optim=optim)
        assert _changes(a, dataclasses.replace(a, train=TrainConfig(steps=20, optim=optim))) == []


def test_other_schedule_fields_and_explicit_totals():
    saved = RunConfig(train=TrainConfig(optim=OptimizerConfig(lr=1e-3, total_steps=500)))
    new = RunConfig(train=TrainConfig(optim=OptimizerConfig(lr=2e-3, warmup_steps=10,
                                                            total_steps=800)))
    assert _changes(saved, new) == [
        "train.optim: lr 0.001 -> 0.002, warmup_steps 0 -> 10, total_steps 500 -> 800"]
    # an optimizer the saved config does not have is skipped; so is a config without train
    assert schedule_changes({}, config_to_dict(new)) == []
