"""A codec command given a run of another model, or finding no run of its own, says so
(``run.json`` / ``common.train.runs``) before loading anything. Fake run directories:
no training."""

import json

import pytest

from common.train.runs import NoRunError, RunKindError, write_run_info
from tokenizer.alpha import infer as alpha_infer
from tokenizer.codec.cli import exit_status
from tokenizer.snac import infer as snac_infer
from tokenizer.snac.inference import SnacTokenizer


def fake_run(path, kind=None, config=None):
    (path / "checkpoints" / "0").mkdir(parents=True)
    if kind:
        write_run_info(path, kind, weights="converted" if kind == "tokenizer.snac" else "trained")
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def test_alpha_infer_names_a_snac_run(tmp_path, capsys):
    run = fake_run(tmp_path / "snac24", "tokenizer.snac")
    argv = ["encode", str(tmp_path / "x.wav"), str(tmp_path / "out"), "--run", str(run)]
    with pytest.raises(RunKindError, match=r"snac24 is a tokenizer\.snac run; python -m "
                                           r"tokenizer\.alpha\.infer needs a tokenizer\.alpha"):
        alpha_infer.main(argv)
    assert exit_status(lambda: len(alpha_infer.main(argv)["written"])) == 1
    assert "error: " in capsys.readouterr().err
    # a run from before run.json: its config says what it holds
    old = fake_run(tmp_path / "old", config={"model": {}, "init_from": "", "curriculum": {}})
    with pytest.raises(RunKindError, match=r"old is a tokenizer\.snac run"):
        alpha_infer.main(["decode", str(tmp_path), str(tmp_path / "o"), "--run", str(old)])


def test_snac_names_an_alpha_run(tmp_path):
    run = fake_run(tmp_path / "alpha", "tokenizer.alpha")
    with pytest.raises(RunKindError, match=r"alpha is a tokenizer\.alpha run; python -m "
                                           r"tokenizer\.snac\.infer needs a tokenizer\.snac"):
        snac_infer.main(["encode", str(tmp_path), str(tmp_path / "o"), "--run", str(run)])
    with pytest.raises(RunKindError, match=r"SnacTokenizer\.from_run needs a tokenizer\.snac"):
        SnacTokenizer.from_run(run)


def test_no_run_of_the_kind_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["encode", "x.wav", "out/"]
    with pytest.raises(NoRunError, match=r"no tokenizer\.alpha run under runs/: train one "
                                         r"with `python -m tokenizer\.alpha\.train`"):
        alpha_infer.main(argv)
    fake_run(tmp_path / "runs" / "snac24", "tokenizer.snac")  # another kind's run only
    assert exit_status(lambda: len(alpha_infer.main(argv)["written"])) == 1
    err = capsys.readouterr().err
    assert "no tokenizer.alpha run under runs/" in err and "tokenizer.snac runs" in err
