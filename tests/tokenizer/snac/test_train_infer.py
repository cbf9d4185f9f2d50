"""SNAC end to end on CPU: ``python -m tokenizer.snac.train`` through a three-stage
curriculum on a tiny espeak corpus, then infer on its checkpoint, and the converter CLI
on weights written in the PyTorch layout (no torch needed: ``to_state_dict``)."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from common.data.corpus import build_corpus
from common.train.runs import read_run_info
from tests.settings import ROOT, TEST_XLA_FLAGS
from tests.tokenizer.corpus import CORPUS
from tokenizer.codec.token_io import TokenFileError, normalize_with_gain
from tokenizer.snac import convert, infer
from tokenizer.snac.config import MODEL_PRESETS, SnacModelConfig
from tokenizer.snac.inference import SnacTokenFile, SnacTokenizer
from tokenizer.snac.model import SNAC
from tokenizer.snac.pytorch_weights import find_weights, to_state_dict
from tokenizer.snac.train_config import CurriculumConfig

# The tests of the trained run (a train subprocess: slow) share it on one worker; the
# others spread over the rest.
on_the_run = pytest.mark.xdist_group("snac_run")
# Two encoder/decoder blocks instead of the tiny preset's four: each block costs compile
# time per curriculum stage (a new segment length is a new program), not coverage.
RUN_MODEL = dataclasses.replace(MODEL_PRESETS["tiny"], encoder_rates=(8, 8),
                                decoder_rates=(8, 8))


@pytest.fixture(scope="module")
def snac_run(tmp_path_factory):
    """A 6-step run, encoder frozen: stages 0.25 s x 4, 0.5 s x 2 (2 steps each), then
    1 s x 1."""
    tmp = tmp_path_factory.mktemp("snac")
    corpus = tmp / "corpus"
    build_corpus(dataclasses.replace(CORPUS, out=corpus))
    flags = ["--preset", "tiny", "--model.encoder-rates", *map(str, RUN_MODEL.encoder_rates),
             "--model.decoder-rates", *map(str, RUN_MODEL.decoder_rates),
             "--data.source.kind", "corpus",
             "--data.source.path", str(corpus), "--data.batch-size", "1",
             "--curriculum.seconds", "0.25", "0.5", "1.0",
             "--curriculum.batch-multipliers", "4", "2", "1", "--curriculum.steps", "2", "2",
             "--freeze", "encoder",
             "--loss.stft-ffts", "256", "512", "--steps", "6", "--train.eval-every", "6",
             "--train.eval-batches", "1", "--train.checkpoint.every", "2",
             "--train.logging.log-every", "1", "--train.run-dir", str(tmp / "runs"),
             "--run-name", "r"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled",
               TRC_CACHE_DIR=str(tmp / "cache"), XLA_FLAGS=TEST_XLA_FLAGS,
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tokenizer.snac.train", *flags], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp / "runs" / "r", proc.stdout + proc.stderr, corpus


@pytest.mark.slow
@on_the_run
def test_curriculum_run_trains_and_checkpoints(snac_run):
    run_dir, out, _ = snac_run
    assert "curriculum 0.25 s x 4, 0.5 s x 2, 1 s x 1" in out
    assert "best eval/loss" in out
    steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 6 and {2, 4} <= set(steps)
    assert (read_run_info(run_dir).kind, read_run_info(run_dir).weights) == \
        ("tokenizer.snac", "trained")
    cfg = json.loads((run_dir / "config.json").read_text())
    assert SnacModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in cfg["model"].items()}) == RUN_MODEL
    # Frozen: the encoder is bit for bit what it was at step 2, the decoder is not.
    assert "frozen: encoder" in out
    before, after = (nnx.state(SnacTokenizer.from_run(run_dir, step=s).codec, nnx.Param)
                     for s in (2, 6))
    for part, same in (("encoder", True), ("decoder", False)):
        a = jax.tree.leaves(before[part])
        b = jax.tree.leaves(after[part])
        assert a and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) == same, part


def test_curriculum_config_checks_its_stages():
    with pytest.raises(ValueError, match="needs 2 positive ints"):
        CurriculumConfig(seconds=(1.0, 2.0, 4.0), batch_multipliers=(4, 2, 1), steps=(2,))
    with pytest.raises(ValueError, match="one per stage"):
        CurriculumConfig(seconds=(1.0, 2.0), batch_multipliers=(4,), steps=(2,))


@pytest.mark.slow
@on_the_run
def test_infer_roundtrip_and_token_files(snac_run, tmp_path):
    run_dir, _, corpus = snac_run
    src = tmp_path / "audio"
    src.mkdir()
    wavs = sorted((corpus / "validation").rglob("*.flac"))[:2]
    assert wavs
    for w in wavs:  # two files: one bucket, one compile
        (src / w.name).write_bytes(w.read_bytes())
    infer.main(["encode", str(src), str(tmp_path / "tok"), "--run", str(run_dir),
                "--bucket-seconds", "4"])
    files = sorted((tmp_path / "tok").rglob("*.npz"))
    assert files
    tokens = SnacTokenFile.load(files[0])
    assert tokens.strides == (4, 2, 1)
    assert [c.size for c in tokens.codes] == [
        n for n in RUN_MODEL.code_lengths(tokens.num_samples)]
    res = infer.main(["decode", str(tmp_path / "tok"), str(tmp_path / "wav"),
                      "--run", str(run_dir), "--bucket-seconds", "4"])
    assert len(res["written"]) == len(files)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(TokenFileError, match=r"bad\.npz: not a SNAC token file"):
        SnacTokenFile.load(bad)


@pytest.mark.slow
@on_the_run
def test_batched_codes_equal_one_at_a_time_and_exact_padding(snac_run, rng):
    run_dir, _, _ = snac_run
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (3000, 3500, 4000)]
    tok = SnacTokenizer.from_run(run_dir, batch_size=4, bucket_seconds=0)
    together = tok.encode(waves)
    for w, t in zip(waves, together, strict=True):
        alone = tok.encode([w])[0]
        for a, b in zip(alone.codes, t.codes, strict=True):
            np.testing.assert_array_equal(a, b)
    # bucket 0 pads exactly as the model (and the PyTorch package) does
    level, _ = normalize_with_gain(waves[1], tok.loudness_dbfs)
    for a, b in zip(tok.codec.encode(jnp.asarray(level)[None, :, None]), together[1].codes,
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], b)
    back = tok.decode(together)
    assert [b.size for b in back] == [w.size for w in waves]


@pytest.mark.slow
def test_convert_cli_from_pytorch_layout(tmp_path, rng):
    """A model written as the package publishes it converts into a run that infer loads,
    with the same codes as the original."""
    cfg = MODEL_PRESETS["tiny"]
    model = SNAC(cfg, rngs=nnx.Rngs(3))
    src = tmp_path / "published"
    src.mkdir()
    save_file(to_state_dict(model), str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps(cfg.published()))
    out = convert.main([str(src), str(tmp_path / "converted")])
    info = read_run_info(out)
    assert (info.kind, info.weights, info.source) == ("tokenizer.snac", "converted", str(src))
    tok = SnacTokenizer.from_run(out, bucket_seconds=0)
    assert tok.loudness_dbfs is None  # the published models never changed loudness
    x = rng.uniform(-0.5, 0.5, 4096).astype(np.float32)
    codes = tok.encode([x])[0].codes
    want = model.encode(jnp.asarray(x)[None, :, None])
    for a, b in zip(codes, want, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b)[0])
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        find_weights(src / "model.safetensors", tmp_path / "missing.json")
