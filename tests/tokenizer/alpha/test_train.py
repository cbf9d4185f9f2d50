"""``python -m tokenizer.alpha.train`` end to end on a tiny corpus: it trains, leaves a
checkpoint, config and W&B offline logs with audio, says where; a resumed run continues
exactly where it stopped."""

import json
import re

import numpy as np
import pytest
from flax import nnx

from common.config import config_from_dict
from common.train.checkpoint import load_model
from common.train.runs import read_run_info
from tests.tokenizer.alpha.runs import run_train, train_flags
from tokenizer.alpha.config import AlphaConfig
from tokenizer.alpha.model import AlphaCodec

# Every test trains or reads a run of the real command: end to end, so slow.
pytestmark = [pytest.mark.xdist_group("alpha_run"), pytest.mark.slow]


def _final(stdout):
    """``{metric: (first, last)}`` from train's final line."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith(("done", "stopped")))
    return {k: (float(a), float(b)) for k, a, b in
            re.findall(r"([\w/]+) (-?[\d.]+) -> (-?[\d.]+)", line)}


def _weights(run_dir):
    codec, _ = load_model(run_dir, lambda d: AlphaCodec(config_from_dict(AlphaConfig, d),
                                                        rngs=nnx.Rngs(0)))
    return nnx.to_flat_state(nnx.state(codec, nnx.Param))


def test_train_leaves_checkpoint_config_and_logs(alpha_run):
    run_dir, out = alpha_run
    assert out.splitlines()[0].startswith("done at step 4")
    assert f"run directory: {run_dir}" in out
    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, 4]
    info = read_run_info(run_dir)
    assert (info.kind, info.weights, info.config_class) == (
        "tokenizer.alpha", "trained", "tokenizer.alpha.config.AlphaConfig")
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["quantizer"]["phoneme_vocab"] > 2  # resolved from the corpus's vocabulary
    final = _final(out)
    assert final["gen/mel"][1] < final["gen/mel"][0]  # four steps already help
    assert np.isfinite(final["disc/loss"]).all()  # the discriminator joined at step 2
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    audio = list(runs[0].rglob("*.wav"))
    for name in ("0_real", "0_recon"):  # audio before/after from log_examples
        assert any(name in p.name for p in audio), audio


def test_resume_continues_exactly(alpha_corpus, alpha_cache, alpha_run, tmp_path):
    full_dir, full_out = alpha_run
    first = run_train(train_flags(alpha_corpus, tmp_path, 2, "--train.run-name", "split"),
                      alpha_cache)
    assert first.startswith("done at step 2")
    resumed = run_train(train_flags(alpha_corpus, tmp_path, 4, "--resume"), alpha_cache)
    assert resumed.startswith("done at step 4")
    assert f"run directory: {tmp_path / 'split'}" in resumed
    full, res = _final(full_out), _final(resumed)
    for key in ("gen/mel", "gen/ctc", "disc/loss"):
        assert res[key][1] == full[key][1], key
    for (pa, a), (pb, b) in zip(_weights(tmp_path / "split"), _weights(full_dir), strict=True):
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(pa))
