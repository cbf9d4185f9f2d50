"""``python -m tokenizer.alpha.infer`` and ``tokenizer.alpha.inference`` on the tiny
trained run: files and folders, batching that does not change codes, token files that
carry what decoding needs, streaming equal to offline, clear errors."""

import dataclasses
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.audio.io import AudioLoadError, load_audio, resample, save_audio
from tests.helpers import assert_close
from tests.tokenizer.alpha.test_model import micro
from tokenizer.alpha.infer import main
from tokenizer.alpha.inference import AlphaTokenizer, TokenFile, model_hash
from tokenizer.alpha.model import AlphaCodec
from tokenizer.codec.cli import exit_status
from tokenizer.codec.token_io import TokenFileError

pytestmark = pytest.mark.xdist_group("alpha_run")


@pytest.fixture
def audio_dir(alpha_corpus, tmp_path):
    """Four corpus utterances in a nested folder (one resampled to 16 kHz), plus a text
    file that is not audio."""
    src = sorted(alpha_corpus.glob("validation/*/*.flac"))[:3]
    out = tmp_path / "in"
    for i, p in enumerate(src):
        (out / f"spk{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, out / f"spk{i % 2}" / p.name)
    wav, sr = load_audio(src[0], 16000)
    save_audio(out / "short16k.wav", wav[: sr // 3], 16000)
    (out / "notes.txt").write_text("not audio")
    return out


@pytest.mark.slow  # the trained run (a train subprocess)
def test_encode_decode_folder(alpha_run, audio_dir, tmp_path):
    run_dir, _ = alpha_run
    res = main(["encode", str(audio_dir), str(tmp_path / "tok"), "--run", str(run_dir),
                "--batch-size", "3"])
    assert len(res["written"]) == 4 and not res["skipped"]
    tok = AlphaTokenizer.from_run(run_dir)
    for path in sorted(audio_dir.rglob("*")):
        if path.suffix not in (".flac", ".wav"):
            continue
        rel = path.relative_to(audio_dir).with_suffix(".npz")
        t = TokenFile.load(tmp_path / "tok" / rel)
        wav, _ = load_audio(path, 24000)
        assert t.codes.shape == (-(-wav.size // 480), 2) and t.codes.dtype == np.int32
        assert t.streams == ("phoneme", "bsq") and t.step == 4 and t.num_samples == wav.size
        assert t.config_hash == model_hash(tok.cfg) and t.frame_rate == 50.0
        assert t.source == str(path)
        # batched with others (left-padded into a shared bucket) == alone
        np.testing.assert_array_equal(t.codes, tok.encode([wav])[0].codes)

    res = main(["decode", str(tmp_path / "tok"), str(tmp_path / "dec"), "--run", str(run_dir)])
    assert len(res["written"]) == 4
    for path in res["written"]:
        wav, sr = load_audio(path)
        t = TokenFile.load(tmp_path / "tok" / path.relative_to(tmp_path / "dec")
                           .with_suffix(".npz"))
        assert sr == 24000 and wav.size == t.num_samples

    res = main(["roundtrip", str(audio_dir), str(tmp_path / "rt"), "--run", str(run_dir)])
    for a, b in zip(sorted((tmp_path / "rt").rglob("*.wav")),
                    sorted((tmp_path / "dec").rglob("*.wav")), strict=True):
        back, sr = load_audio(a)
        if a.name == "short16k.wav":  # comes back at its input's rate, not the codec's
            assert sr == 16000
            decoded = resample(load_audio(b)[0], 24000, 16000)
            # 16-bit files on both sides of the resampling: a quantisation step or two
            np.testing.assert_allclose(back, np.clip(decoded, -1, 1), atol=2 / 32768)
        else:
            np.testing.assert_array_equal(back, load_audio(b)[0])


@pytest.mark.slow
def test_decode_restores_level_and_length(alpha_run, alpha_corpus):
    tok = AlphaTokenizer.from_run(alpha_run[0], batch_size=2)
    wav, _ = load_audio(sorted(alpha_corpus.glob("validation/*/*.flac"))[0])
    loud, quiet = wav[:5000] * (0.9 / np.abs(wav).max()), wav[:7001] * 0.01
    tokens = tok.encode([loud, quiet])
    assert tokens[0].gain_db < 0 < tokens[1].gain_db  # both scaled to the training level
    out = tok.decode(tokens)
    assert [o.size for o in out] == [5000, 7001]
    # loudness gain undone: the quiet input stays quiet
    assert np.abs(out[1]).max() < 0.1 * np.abs(out[0]).max()


@pytest.mark.slow
def test_bad_inputs_are_named(alpha_run, audio_dir, tmp_path):
    run_dir = str(alpha_run[0])
    (audio_dir / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    res = main(["encode", str(audio_dir), str(tmp_path / "tok"), "--run", run_dir])
    assert len(res["written"]) == 4 and len(res["skipped"]) == 1
    assert "broken.wav" in res["skipped"][0]
    with pytest.raises(AudioLoadError, match=r"broken\.wav"):
        main(["encode", str(audio_dir), str(tmp_path / "t2"), "--run", run_dir, "--strict"])
    with pytest.raises(AudioLoadError, match=r"broken\.wav"):
        main(["encode", str(audio_dir / "broken.wav"), str(tmp_path / "t3"), "--run", run_dir])
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        main(["encode", str(audio_dir), str(tmp_path / "t4"), "--run", str(tmp_path)])
    with pytest.raises(ValueError, match="causal codec"):
        main(["encode", str(audio_dir), str(tmp_path / "t5"), "--run", run_dir, "--stream"])

    tok = TokenFile.load(next((tmp_path / "tok").rglob("*.npz")))
    other = dataclasses.replace(tok, config_hash="0123456789ab")
    other.save(tmp_path / "other" / "x.npz")
    with pytest.raises(TokenFileError, match=r"x\.npz: encoded by a codec with config "
                                             "0123456789ab"):
        main(["decode", str(tmp_path / "other" / "x.npz"), str(tmp_path / "d"), "--run", run_dir])
    codes = tok.codes.copy()
    codes[0, 0] = 10_000
    dataclasses.replace(tok, codes=codes).save(tmp_path / "range" / "y.npz")
    with pytest.raises(TokenFileError, match="stream phoneme has codes in"):
        main(["decode", str(tmp_path / "range"), str(tmp_path / "d"), "--run", run_dir])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TokenFileError, match=r"junk\.npz: not an alpha token file"):
        TokenFile.load(tmp_path / "junk.npz")


@pytest.mark.slow  # the trained run (a train subprocess)
def test_decoding_only_another_codecs_tokens_exits_1(alpha_run, tmp_path, capsys):
    from tokenizer.snac.inference import SnacTokenFile

    rng = np.random.default_rng(0)
    for i in range(3):
        SnacTokenFile(codes=[rng.integers(0, 64, n) for n in (4, 8, 16)], strides=(4, 2, 1),
                      codebook_size=64, sample_rate=24000, num_samples=16 * 512,
                      config_hash="x", step=0).save(tmp_path / "snac" / f"{i}.npz")
    result = {}

    def decode():
        result.update(main(["decode", str(tmp_path / "snac"), str(tmp_path / "out"),
                            "--run", str(alpha_run[0])]))
        return len(result["written"])

    assert exit_status(decode) == 1
    assert result["written"] == [] and len(result["skipped"]) == 3
    out, err = capsys.readouterr()
    assert "wrote 0 files" in out and "skipped 3 unreadable" in out
    assert "nothing was produced" in err


@pytest.mark.slow  # compiles a streaming and an offline codec
def test_streaming_tokenizer_equals_offline():
    cfg = micro()
    cfg = dataclasses.replace(cfg, codec=dataclasses.replace(cfg.codec, causal=True))
    tok = AlphaTokenizer(AlphaCodec(cfg, rngs=nnx.Rngs(3)), cfg, batch_size=2,
                         bucket_seconds=0.05, loudness_dbfs=-20.0)
    rng = np.random.default_rng(0)
    t = np.arange(2000) / cfg.sample_rate
    wavs = [(0.3 * np.sin(2 * np.pi * f * t[:n]) + 0.02 * rng.standard_normal(n))
            .astype(np.float32) for f, n in ((220, 2000), (500, 1234), (330, 777))]
    offline = tok.encode(wavs)
    streamed = tok.encode(wavs, stream=True, chunk_frames=4)
    for a, b in zip(offline, streamed, strict=True):
        np.testing.assert_array_equal(a.codes, b.codes)
    for a, b in zip(tok.decode(offline), tok.decode(offline, stream=True, chunk_frames=3),
                    strict=True):
        assert_close(jnp.asarray(b), jnp.asarray(a), 1e-5)
