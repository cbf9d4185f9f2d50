"""run.json, finding runs by kind and ``python -m common.train.list_runs`` (plain files: fake
runs with orbax's directory layout, no training)."""

import dataclasses
import json
import os

import pytest

from common.train.list_runs import main
from common.train.runs import (
    RUN_FILE,
    NoRunError,
    RunKindError,
    format_runs,
    latest_run,
    list_runs,
    pick_run,
    read_run_info,
    require_kind,
    start_run,
    write_run_info,
)


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    x: int = 1


def fake_run(path, *, steps=(), scores=None, config=None):
    """A run directory as the loop leaves it: config.json and checkpoints/<step>/."""
    (path / "checkpoints").mkdir(parents=True)
    for step in steps:
        (path / "checkpoints" / str(step) / "model").mkdir(parents=True)
    (path / "checkpoints" / "9.orbax-checkpoint-tmp-123").mkdir()  # a save in progress
    for step, value in (scores or {}).items():
        d = path / "checkpoints" / str(step) / "scores"
        d.mkdir(parents=True)
        (d / "metadata").write_text(json.dumps({"eval/loss": value}))
    (path / "config.json").write_text(json.dumps(config or {"train": {}}))
    return path


def test_write_then_read(tmp_path):
    path = write_run_info(tmp_path / "r", "tokenizer.snac", weights="converted",
                          source="snac_24khz/", config=FakeConfig())
    assert path == tmp_path / "r" / RUN_FILE
    info = read_run_info(tmp_path / "r")
    assert info.kind == "tokenizer.snac" and info.weights == "converted"
    assert info.source == "snac_24khz/" and info.describe_weights() == "converted from snac_24khz/"
    assert info.config_class == f"{__name__}.FakeConfig"
    assert info.created.endswith("+00:00")
    with pytest.raises(ValueError, match="weights must be one of"):
        write_run_info(tmp_path / "r", "tokenizer.snac", weights="downloaded")


def test_old_run_without_run_json(tmp_path):
    alpha = fake_run(tmp_path / "a", steps=[5],
                     config={"codec": {}, "quantizer": {}, "disc": {}, "train": {}})
    snac = fake_run(tmp_path / "s", steps=[5],
                    config={"model": {}, "init_from": "", "curriculum": {}, "train": {}})
    other = fake_run(tmp_path / "o", steps=[5], config={"model": {}})
    assert read_run_info(alpha).kind == "tokenizer.alpha"
    assert read_run_info(snac).kind == "tokenizer.snac"
    assert read_run_info(other).kind == "unknown"
    assert read_run_info(alpha).created  # the directory's time stands in


def test_require_kind_names_both_kinds_and_the_command(tmp_path):
    write_run_info(tmp_path / "x", "tokenizer.snac")
    assert require_kind(tmp_path / "x", "tokenizer.snac", "tokenizer.snac.infer").kind == \
        "tokenizer.snac"
    with pytest.raises(RunKindError) as e:
        require_kind(tmp_path / "x", "tokenizer.alpha", "tokenizer.alpha.infer")
    assert str(e.value) == (f"{tmp_path / 'x'} is a tokenizer.snac run; tokenizer.alpha.infer "
                            "needs a tokenizer.alpha run (see `python -m common.train.list_runs`)")
    # A run that cannot tell its kind is let through (loading it will tell).
    fake_run(tmp_path / "old", config={"model": {}})
    assert require_kind(tmp_path / "old", "tokenizer.alpha", "x").kind == "unknown"


def test_start_run_writes_once_and_refuses_another_kind(tmp_path):
    info = start_run(tmp_path / "r", "tokenizer.alpha", config=FakeConfig())
    assert (info.kind, info.weights, info.source) == ("tokenizer.alpha", "trained", None)
    created = info.created
    again = start_run(tmp_path / "r", "tokenizer.alpha", source="elsewhere")  # a resume
    assert again.created == created and again.source is None
    with pytest.raises(RunKindError, match=r"is a tokenizer\.alpha run"):
        start_run(tmp_path / "r", "tokenizer.snac")
    # An old run (no run.json) of the right kind gets one; of another kind, an error.
    old = fake_run(tmp_path / "old", steps=[1], config={"codec": {}, "quantizer": {},
                                                          "disc": {}})
    with pytest.raises(RunKindError):
        start_run(old, "tokenizer.snac")
    assert not (old / RUN_FILE).exists()
    assert start_run(old, "tokenizer.alpha", source="runs/base").describe_weights() == \
        "trained from runs/base"


def test_list_runs_and_latest_run(tmp_path):
    a = fake_run(tmp_path / "alpha-1", steps=[100, 200], scores={100: 0.5, 200: 0.7},
                 config={"train": {"checkpoint": {"best_metric": "eval/loss",
                                                  "best_mode": "min"}}})
    write_run_info(a, "tokenizer.alpha", created="2026-12-01T10:00:00+00:00")
    s = fake_run(tmp_path / "snac-conv", steps=[0])
    write_run_info(s, "tokenizer.snac", weights="converted", source="snac_24khz",
                   created="2026-12-02T10:00:00+00:00")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["alpha-1", "snac-conv"]
    assert (runs[0].kind, runs[0].weights, runs[0].latest_step) == ("tokenizer.alpha",
                                                                      "trained", 200)
    assert runs[0].best == ("eval/loss", 0.5, 100)
    assert (runs[1].weights, runs[1].latest_step, runs[1].best) == \
        ("converted from snac_24khz", 0, None)
    table = format_runs(runs).splitlines()
    assert table[0].split() == ["NAME", "KIND", "WEIGHTS", "STEP", "BEST", "CREATED"]
    assert "eval/loss 0.5 @ 100" in table[1] and "2026-12-01 10:00" in table[1]

    assert latest_run("tokenizer.snac", tmp_path) == s
    newer = fake_run(tmp_path / "snac-2", steps=[3])
    write_run_info(newer, "tokenizer.snac", created="2026-12-03T10:00:00+00:00")
    assert latest_run("tokenizer.snac", tmp_path) == newer
    empty = tmp_path / "snac-3"  # started, never checkpointed: nothing to load
    write_run_info(empty, "tokenizer.snac", created="2026-12-04T10:00:00+00:00")
    assert latest_run("tokenizer.snac", tmp_path) == newer


def test_latest_run_says_how_to_get_one(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(NoRunError) as e:
        latest_run("tokenizer.alpha", root)
    assert str(e.value) == (f"no tokenizer.alpha run under {root}/: train one with "
                            "`python -m tokenizer.alpha.train` or pass --run DIR")
    assert isinstance(e.value, FileNotFoundError)  # CLIs that caught find_run's still do
    write_run_info(fake_run(root / "s", steps=[1]), "tokenizer.snac")
    with pytest.raises(NoRunError, match=r"it holds tokenizer.snac runs"):
        latest_run("tokenizer.alpha", root)


def test_pick_run_checks_the_given_run_or_finds_the_newest(tmp_path):
    root = tmp_path / "runs"
    alpha = fake_run(root / "a", steps=[1])
    write_run_info(alpha, "tokenizer.alpha")
    snac = fake_run(root / "s", steps=[1])
    write_run_info(snac, "tokenizer.snac")
    assert pick_run(None, "tokenizer.alpha", "tokenizer.alpha.infer", root) == alpha
    assert pick_run(str(alpha), "tokenizer.alpha", "tokenizer.alpha.infer") == alpha
    with pytest.raises(RunKindError, match=r"tokenizer\.alpha\.infer needs a tokenizer\.alpha run"):
        pick_run(snac, "tokenizer.alpha", "tokenizer.alpha.infer")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        pick_run(tmp_path, "tokenizer.alpha", "tokenizer.alpha.infer")
    with pytest.raises(NoRunError, match=r"no tests\.toy run under"):
        pick_run("", "tests.toy", "x", root)
    # A stage's flag and the command that makes its runs, when not python -m <kind>.train
    with pytest.raises(NoRunError) as e:
        pick_run("", "worldmodel.sive", "x", root, flag="--sive-run",
                 train_command="python -m worldmodel.train audio-sive")
    assert ("train one with `python -m worldmodel.train audio-sive` or pass --sive-run DIR"
            in str(e.value))
    with pytest.raises(FileNotFoundError, match=r"--sive-run .*: not a run directory"):
        pick_run(tmp_path, "worldmodel.sive", "x", flag="--sive-run")


@pytest.fixture(autouse=True)
def quiet_console(monkeypatch):
    """The CLI's setup_console would replace pytest's log handlers on the root logger."""
    calls = []
    monkeypatch.setattr("common.train.list_runs.setup_console", lambda verbose=False: calls.append(
        verbose))
    return calls


def test_cli_lists_runs_or_says_where_it_looked(tmp_path, capsys, quiet_console):
    assert main([str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert f"no runs under {tmp_path / 'none'}" in err
    write_run_info(fake_run(tmp_path / "r", steps=[7]), "tokenizer.alpha")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tokenizer.alpha" in out and " 7 " in out
    assert quiet_console == [False, False]


def test_cli_default_root_is_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("runs")
    assert main([]) == 1
    assert f"no runs under {tmp_path / 'runs'}" in capsys.readouterr().err


def test_resume_picks_the_newest_run_of_its_kind(tmp_path):
    from common.train.configs import TrainConfig
    from common.train.loop import resolve_run_dir

    alpha = fake_run(tmp_path / "a", steps=[1])
    write_run_info(alpha, "tokenizer.alpha")
    snac = fake_run(tmp_path / "s", steps=[1])
    write_run_info(snac, "tokenizer.snac")
    os.utime(alpha, (1_000_000, 1_000_000))  # the snac run is the newest
    cfg = TrainConfig(run_dir=str(tmp_path), resume=True)
    assert resolve_run_dir(cfg) == snac
    assert resolve_run_dir(cfg, "tokenizer.alpha") == alpha
    with pytest.raises(FileNotFoundError, match=r"no tests\.toy run with checkpoints"):
        resolve_run_dir(cfg, "tests.toy")
