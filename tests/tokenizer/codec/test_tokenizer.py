"""The tokenizer and token-file bases with a toy third codec: all it defines is its
model call and code layout; batching, loudness, token files and checks are the base's."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tokenizer.codec import tokenizer as tokenizer_module
from tokenizer.codec.token_io import CodecTokenFile, TokenFileError, config_digest
from tokenizer.codec.tokenizer import CodecMemoryError, CodecTokenizer


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    hop: int = 4
    levels: int = 16
    sample_rate: int = 8000


class ToyCodec(nnx.Module):
    """Each frame of ``hop`` samples -> its mean, quantised to ``levels`` codes in [-1, 1]."""

    def __init__(self, cfg: ToyConfig):
        self.cfg = cfg
        self.scale = nnx.Param(jnp.ones(()))

    def encode(self, wav):  # [B, N, 1] -> int32 [B, N / hop]
        b, n, _ = wav.shape
        mean = wav[..., 0].reshape(b, n // self.cfg.hop, self.cfg.hop).mean(-1)
        q = jnp.round((mean * self.scale[...] + 1) * (self.cfg.levels - 1) / 2)
        return jnp.clip(q, 0, self.cfg.levels - 1).astype(jnp.int32)

    def decode(self, codes):  # int [B, T] -> [B, T * hop, 1]
        x = codes.astype(jnp.float32) * 2 / (self.cfg.levels - 1) - 1
        return jnp.repeat(x, self.cfg.hop, axis=1)[..., None]


@dataclasses.dataclass(kw_only=True)
class ToyTokenFile(CodecTokenFile):
    kind = "a toy token file"

    codes: np.ndarray
    levels: int

    def code_arrays(self):
        return {"codes": self.codes.astype(np.int32)}

    @classmethod
    def codes_from_arrays(cls, path, arrays, meta):
        if "codes" not in arrays:
            raise TokenFileError(f"{path}: not a toy token file (no codes)")
        return arrays["codes"].astype(np.int32)


class ToyTokenizer(CodecTokenizer[ToyTokenFile]):
    codec_name = "toy"
    config_type = ToyConfig
    token_file_type = ToyTokenFile

    @staticmethod
    def model_hash(cfg):
        return config_digest(dataclasses.asdict(cfg))

    @classmethod
    def build_model(cls, cfg):
        return ToyCodec(cfg)

    @property
    def sample_rate(self):
        return self.cfg.sample_rate

    @staticmethod
    def _model_encode(model, wav):
        return model.encode(wav)

    @staticmethod
    def _model_decode(model, codes):
        return model.decode(codes)

    def _token_fields(self):
        return {"levels": self.cfg.levels}

    def _check_layout(self, tokens, name):
        if tokens.codes.ndim != 1:
            raise TokenFileError(f"{name}: codes must be [T]")

    def _code_streams(self, tokens):
        return [("codes", tokens.codes, self.cfg.levels)]

    def _encode_length(self, wav):
        return -(-wav.size // self.cfg.hop)

    def _decode_length(self, tokens):
        return tokens.codes.size

    def _encode_rows(self, rows, *, names=()):
        frames = [-(-r.size // self.cfg.hop) for r in rows]
        n = max(frames) * self.cfg.hop
        wav = np.stack([np.pad(r, (0, n - r.size)) for r in self._fill(rows)])[..., None]
        codes = np.asarray(self._call(self._encode, wav, names=names))
        return [codes[j, :f] for j, f in enumerate(frames)]

    def _decode_rows(self, rows, *, names=()):
        t = max(r.codes.size for r in rows)
        codes = np.stack([np.pad(r.codes, (0, t - r.codes.size)) for r in self._fill(rows)])
        wav = np.asarray(self._call(self._decode, codes, names=names))[..., 0]
        return [wav[j] for j in range(len(rows))]


def _tok(**kw):
    cfg = ToyConfig()
    return ToyTokenizer(ToyCodec(cfg), cfg, **kw)


def test_batched_encode_decode_keeps_lengths_and_codes():
    tok = _tok(batch_size=2)
    rng = np.random.default_rng(0)
    # piecewise constant on the code grid: whole frames decode back exactly (the last,
    # partial one is zero-padded before its mean is taken)
    grid = np.linspace(-1, 1, 16, dtype=np.float32)
    wavs = [np.repeat(rng.choice(grid, f), 4)[:n] for f, n in ((5, 18), (2, 8), (9, 33))]
    calls = []
    tokens = tok.encode(wavs, progress=calls.append)
    assert calls == [2, 1]
    for w, t in zip(wavs, tokens, strict=True):
        assert t.codes.shape == (-(-w.size // 4),) and t.num_samples == w.size
        assert t.config_hash == tok.config_hash and t.levels == 16 and t.gain_db == 0.0
        np.testing.assert_array_equal(t.codes, tok.encode([w])[0].codes)  # batch-independent
    back = tok.decode(tokens)
    for w, b in zip(wavs, back, strict=True):
        assert b.dtype == np.float32 and b.size == w.size
        whole = w.size // 4 * 4
        np.testing.assert_allclose(b[:whole], w[:whole], atol=1e-6)


def _short_and_long(monkeypatch, tok):
    """A 40-sample and a 40 000-sample waveform, with the free memory set so that only
    calls carrying the long one do not fit (the toy's call needs ~4 bytes a sample)."""
    rng = np.random.default_rng(0)
    wavs = [rng.uniform(-1, 1, n).astype(np.float32) for n in (40, 40_000)]
    small, _ = tok.memory_needed(tok._encode, np.zeros((2, 40, 1), np.float32))
    monkeypatch.setattr(tokenizer_module, "available_memory_bytes",
                        lambda: int((small + 60_000) / tokenizer_module.MEMORY_MARGIN))
    return wavs


def test_a_call_too_big_for_memory_is_named_and_the_rest_goes_on(monkeypatch):
    """A batch that would not fit in the free memory (XLA's estimate) is retried one
    input at a time; an input that alone does not fit raises an error naming it, or
    goes to ``on_too_big`` and gets None while the others are encoded."""
    tok = _tok(batch_size=2)
    wavs = _short_and_long(monkeypatch, tok)
    with pytest.raises(CodecMemoryError, match=r"long\.wav: one toy call .* needs about"):
        tok.encode(wavs, names=["short.wav", "long.wav"])
    too_big = []
    tokens = tok.encode(wavs, names=["short.wav", "long.wav"],
                        on_too_big=lambda i, e: too_big.append((i, str(e))))
    assert tokens[1] is None and [i for i, _ in too_big] == [1]
    assert "long.wav" in too_big[0][1] and "KiB is free" in too_big[0][1]
    np.testing.assert_array_equal(tokens[0].codes, _tok().encode(wavs[:1])[0].codes)


def test_loudness_gain_is_recorded_and_undone():
    tok = _tok(loudness_dbfs=-20.0)
    wav = np.full(40, 0.01, np.float32)
    (t,) = tok.encode([wav])
    assert t.gain_db > 0
    (back,) = tok.decode([t])
    assert back.size == 40 and np.abs(back).max() < 0.1


def test_token_file_round_trip_and_errors(tmp_path):
    tok = _tok()
    (t,) = tok.encode([np.linspace(-0.5, 0.5, 30, dtype=np.float32)])
    t.source = "x.wav"
    loaded = ToyTokenFile.load(t.save(tmp_path / "a" / "x.npz"))
    np.testing.assert_array_equal(loaded.codes, t.codes)
    assert dataclasses.replace(loaded, codes=t.codes) == dataclasses.replace(t, codes=t.codes)

    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(TokenFileError, match=r"junk\.npz: not a toy token file"):
        ToyTokenFile.load(tmp_path / "junk.npz")
    with pytest.raises(TokenFileError, match="encoded by a codec with config 0123"):
        tok.decode([dataclasses.replace(t, config_hash="0123")])
    codes = t.codes.copy()
    codes[0] = 99
    with pytest.raises(TokenFileError, match=r"f\.npz: codes has codes in \[0, 99\], outside "
                                             "its codebook of 16"):
        tok.decode([dataclasses.replace(t, codes=codes)], names=["f.npz"])
    with pytest.raises(TokenFileError, match="codes must be"):
        tok.decode([dataclasses.replace(t, codes=t.codes[None])])


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        _tok(batch_size=0)
    with pytest.raises(ValueError, match="non-empty mono"):
        _tok().encode([np.zeros((3, 2), np.float32)])


@dataclasses.dataclass(frozen=True)
class ToyData:
    loudness_dbfs: float | None = None


@dataclasses.dataclass(frozen=True)
class ToyRunConfig(ToyConfig):
    data: ToyData = dataclasses.field(default_factory=ToyData)


class ToyRunTokenizer(ToyTokenizer):
    run_kind = "tests.toy"
    config_type = ToyRunConfig


@pytest.mark.parametrize("with_ema", [False, True])
def test_from_run_prefers_the_ema_weights(tmp_path, with_ema):
    """A GAN run that kept EMA weights (item "ema", ``gan.ema_decay``) is loaded with
    them; a run without them with its trained weights (item "model")."""
    from common.config import config_to_dict
    from common.train.checkpoint import Checkpointer
    from common.train.runs import start_run

    cfg = ToyRunConfig()
    start_run(tmp_path, "tests.toy", config=cfg)

    def state(scale):
        codec = ToyCodec(cfg)
        codec.scale[...] = jnp.float32(scale)
        return nnx.state(codec)

    items = {"model": state(1.0), **({"ema": state(0.5)} if with_ema else {})}
    ckpt = Checkpointer(tmp_path)
    ckpt.save(3, items, config=config_to_dict(cfg))
    ckpt.close()
    tok = ToyRunTokenizer.from_run(tmp_path)
    assert tok.step == 3
    assert float(tok.codec.scale[...]) == (0.5 if with_ema else 1.0)
