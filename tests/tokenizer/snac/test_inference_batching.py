"""How ``SnacTokenizer`` pads and batches, as a user's folder meets it: each file is
padded to the model's own multiple within ~``bucket_seconds`` buckets (not to the lcm
of the two, 32 s at 24 kHz), calls are capped by total padded audio, a short batch is
filled with silent rows to a power of two (never with copies of a long file), and
``parity`` is the PyTorch package's ``encode``: no loudness change, the pad multiple
alone. The tiny model, untrained: only shapes and codes are compared."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tokenizer.snac import infer
from tokenizer.snac.config import MODEL_PRESETS
from tokenizer.snac.inference import SnacTokenizer
from tokenizer.snac.model import SNAC
from tokenizer.snac.train_config import SnacConfig

CFG = SnacConfig(model=MODEL_PRESETS["tiny"])  # 24 kHz, pad multiple 2048
SR, M = CFG.model.sampling_rate, CFG.model.pad_multiple


@pytest.fixture(scope="module")
def model():
    return SNAC(CFG.model, rngs=nnx.Rngs(0))


def _spy(tok, monkeypatch):
    """Record the shapes of every model call."""
    shapes = []
    call = tok._call

    def spy(fn, *args, names=()):
        shapes.append([a.shape for a in (args[0] if isinstance(args[0], list) else args)])
        return call(fn, *args, names=names)

    monkeypatch.setattr(tok, "_call", spy)
    return shapes


def test_buckets_are_whole_pad_multiples_near_the_bucket(model):
    assert SnacTokenizer(model, CFG).multiple == 12 * M  # 1.024 s, not lcm(2048, 24000)
    assert SnacTokenizer(model, CFG, bucket_seconds=0).multiple == M
    assert SnacTokenizer(model, CFG, bucket_seconds=0.01).multiple == M
    assert SnacTokenizer(model, CFG, parity=True, bucket_seconds=4).multiple == M


@pytest.mark.slow  # five compiles of the tiny model
def test_calls_are_capped_by_audio_and_never_filled_with_copies(model, monkeypatch, rng):
    tok = SnacTokenizer(model, CFG, batch_size=8, max_batch_seconds=5.0,
                        loudness_dbfs=None)
    shapes = _spy(tok, monkeypatch)
    lengths = [SR // 2, SR // 2 + 100, SR // 2 + 200, 9 * SR]  # three short, one long
    wavs = [rng.uniform(-0.3, 0.3, n).astype(np.float32) for n in lengths]
    tokens = tok.encode(wavs)
    short = 12 * M
    # the three short files: one call of 4 rows (the 4th silent; at most 5 s / 1.024 s
    # = 4 rows); the 9 s file alone (over the 5 s cap), padded to 9.2 s, not to 32 s
    assert shapes == [[(4, short, 1)], [(1, 9 * short, 1)]]
    for w, t in zip(wavs, tokens, strict=True):
        alone = tok.encode([w])[0]
        for a, b in zip(alone.codes, t.codes, strict=True):
            np.testing.assert_array_equal(a, b)
        assert [c.size for c in t.codes] == list(CFG.model.code_lengths(w.size))
    shapes.clear()
    back = tok.decode(tokens)
    assert [b.size for b in back] == lengths
    assert [s[0][0] for s in shapes] == [4, 1]  # decode batches alike


def test_parity_is_the_package_encode(model, rng):
    """No loudness change and the pad multiple alone: the model's own ``encode``."""
    wav = rng.uniform(-0.05, 0.05, 5000).astype(np.float32)  # quiet: -20 dBFS would move it
    tok = SnacTokenizer(model, CFG, parity=True, loudness_dbfs=-20.0)
    assert tok.loudness_dbfs is None
    codes = tok.encode([wav])[0].codes
    for a, b in zip(codes, model.encode(jnp.asarray(wav)[None, :, None]), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b)[0])


def test_cli_flags_reach_the_tokenizer(monkeypatch, tmp_path):
    seen = {}

    def from_run(*a, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(SnacTokenizer, "from_run", from_run)
    with pytest.raises(SystemExit):
        infer.run(infer.parse_codec_command(
            infer.SnacInferArgs, ["encode", str(tmp_path), str(tmp_path / "o"), "--parity",
                                  "--max-batch-seconds", "10"], prog=infer.PROG,
            description=""))
    assert seen["parity"] is True and seen["max_batch_seconds"] == 10.0
