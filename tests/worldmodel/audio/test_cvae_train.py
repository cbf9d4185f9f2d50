"""``python -m worldmodel.train audio-cvae``: the real command over a SIVE run and a
speaker-encoder run (stage chaining: it finds them by directory, copies their configs
and freezes their weights), checkpoints and an exact resume (with the mel GAN); the
errors for a missing or wrong upstream run."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from common.config import config_from_dict
from common.train.checkpoint import load_model
from common.train.runs import NoRunError, RunKindError
from tests.worldmodel.audio.runs import SHARED_RUNS, run_command, train_losses
from worldmodel.audio.cvae.config import CvaeConfig, tiny
from worldmodel.audio.cvae.data import resolve_data
from worldmodel.audio.cvae.evaluate import format_table
from worldmodel.audio.cvae.evaluate import main as eval_main
from worldmodel.audio.cvae.training import CvaeTrainee, load_encoders
from worldmodel.audio.vocoder.config import tiny as vocoder_tiny

# The tests stand on the session's SIVE and speaker-encoder runs (one xdist worker).
pytestmark = SHARED_RUNS

COMMON = ["--data.source.kind", "corpus", "--batch-size", "4",
          "--train.optim.warmup-steps", "1", "--train.logging.log-every", "1",
          "--train.eval-batches", "1"]


@pytest.fixture(scope="module")
def upstream(audio_runs):
    """The session's SIVE and speaker-encoder runs."""
    return audio_runs["sive"][0], audio_runs["speaker"][0]


def _train(corpus, upstream, run_dir, name, steps, cache, *extra):
    sive, spk = upstream
    return run_command(
        ["audio-cvae", "--sive-run", str(sive), "--speaker-run", str(spk),
         "--data.source.path", str(corpus), *COMMON, "--data.max-seconds", "4.0",
         "--data.bucket-seconds", "4.0", "--steps", str(steps),
         "--train.optim.total-steps", "4", "--loss.kl-warmup-steps", "4",
         "--train.checkpoint.every", "2", "--train.eval-every", "2",
         "--train.run-dir", str(run_dir), "--run-name", name, *extra], cache)


# The PatchGAN on the mel joins at step 3: the resume below crosses the GAN's start.
GAN = ("--gan", "--gan.disc-start-step", "2", "--gan.r1-weight", "1.0",
       "--disc.channels", "4", "--disc.n-layers", "2")


@pytest.mark.slow  # two upstream runs, then three runs of the CVAE command
def test_reads_its_stages_trains_and_resumes_exactly(audio_corpus, upstream, tmp_path):
    cache = tmp_path / "cache"
    out = _train(audio_corpus, upstream, tmp_path, "full", 4, cache, *GAN)
    assert "done at step 4" in out and "gen/cvae/mel_l1" in out and "gen/adv_loss" in out
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    started = {r["step"]: r["disc/started"] for r in rows if "disc/started" in r}
    assert started == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}
    assert all(np.isfinite(r["disc/r1"]) and r["gen/adv_weight"] > 0
               for r in rows if r.get("disc/started") == 1.0)
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    sive_cfg = json.load(open(upstream[0] / "config.json"))
    spk_cfg = json.load(open(upstream[1] / "config.json"))
    assert cfg["sive_run"] == str(upstream[0]) and cfg["speaker_run"] == str(upstream[1])
    assert cfg["content"] == sive_cfg["encoder"] and cfg["speaker"] == spk_cfg["model"]
    assert cfg["model"]["content_dim"] == sive_cfg["encoder"]["dim"]
    assert cfg["model"]["speaker_dim"] == spk_cfg["model"]["embed_dim"]
    assert cfg["phoneme_vocab"] == sive_cfg["data"]["phoneme_vocab"]

    _train(audio_corpus, upstream, tmp_path, "part", 2, cache, *GAN)
    _train(audio_corpus, upstream, tmp_path, "part", 4, cache, "--resume", *GAN)
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    # same data, RNG, weights (the discriminator's too) and KL warm-up counter
    for step in (3, 4):
        assert part[step] == full[step], (step, part[step], full[step])

    # The frozen encoders are the upstream runs' weights (batch statistics included),
    # unchanged by training.
    trained, d = load_model(tmp_path / "full", lambda d: CvaeTrainee(
        config_from_dict(CvaeConfig, d), rngs=nnx.Rngs(0)))
    content, speaker = load_encoders(config_from_dict(CvaeConfig, d))
    for got, want in ((nnx.state(trained.content), content),
                      (nnx.state(trained.speaker), speaker)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)

    # The evaluation on the tiny checkpoint: every measure, in range, table and JSON.
    result = eval_main(["--run", str(tmp_path / "full"), "--json", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text()) == result
    assert result["speakers"] == 4 and result["mel_l1"] > 0
    assert -1 <= result["cos_target"] <= 1 and 0 <= result["closer_to_target"] <= 1
    assert all(result[f"per_{k}"] >= 0 for k in ("original", "reconstructed", "converted"))
    assert "closer to the target" in format_table(result)
    assert "vocoder_resynthesis_l1" not in result

    # With a vocoder (random weights: a run written as a converter writes one) the
    # yardstick: its re-synthesis distance, the reconstruction's over the same frames.
    voc = _random_vocoder(tmp_path / "vocoder", vocoder_tiny())
    result = eval_main(["--run", str(tmp_path / "full"), "--vocoder-run", str(voc)])
    assert result["vocoder_run"] == str(voc)
    assert result["vocoder_resynthesis_l1"] > 0 and result["vocoded_reconstruction_l1"] > 0
    assert 0 < result["mel_l1_same_frames"] <= 1.5 * result["mel_l1"]
    assert result["reconstruction_vs_vocoder"] == pytest.approx(
        result["mel_l1_same_frames"] / result["vocoder_resynthesis_l1"])
    assert "target <= 1.5" in format_table(result)
    other = vocoder_tiny()
    other = dataclasses.replace(other, features=dataclasses.replace(other.features, fmin=20.0))
    with pytest.raises(ValueError, match="other mel features"):
        eval_main(["--run", str(tmp_path / "full"),
                   "--vocoder-run", str(_random_vocoder(tmp_path / "v2", other))])


def _random_vocoder(path, cfg):
    """A vocoder run with random weights."""
    from common.config import config_to_dict
    from common.train.checkpoint import Checkpointer, write_config_json
    from common.train.runs import write_run_info
    from worldmodel.audio.vocoder.config import KIND
    from worldmodel.audio.vocoder.training import build_generator

    config = config_to_dict(cfg)
    ckpt = Checkpointer(path)
    ckpt.save(0, {"model": nnx.state(build_generator(cfg, nnx.Rngs(0)))}, config=config,
              force=True)
    ckpt.close()
    write_config_json(path, config)
    write_run_info(path, KIND, weights="random", config=cfg)
    return path


@pytest.mark.slow  # needs the module's upstream runs
def test_missing_or_wrong_upstream_runs_are_named(upstream, tmp_path, monkeypatch):
    sive, spk = upstream
    cfg = dataclasses.replace(tiny(), sive_run=str(sive), speaker_run=str(spk))
    with pytest.raises(RunKindError, match=r"needs a worldmodel\.sive run"):
        resolve_data(dataclasses.replace(cfg, sive_run=str(spk)))
    with pytest.raises(FileNotFoundError, match=r"--speaker-run .*: not a run directory"):
        resolve_data(dataclasses.replace(cfg, speaker_run=str(tmp_path)))
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(NoRunError, match=r"python -m worldmodel\.train audio-sive"):
        resolve_data(dataclasses.replace(cfg, sive_run=""))


@pytest.mark.slow  # needs the module's upstream runs; compiles both encoders
def test_preprocess_extractors_read_the_runs(upstream, audio_corpus, tmp_path):
    """SIVE features and speaker embeddings as preprocessing plug-ins: shards hold what
    the runs' encoders give (padding to the compile bucket changes nothing)."""
    from common.audio.io import load_audio
    from common.data.features import build_extractors
    from common.data.preprocessing import preprocess
    from common.data.shards import ShardSource
    from common.data.sources import SourceConfig
    from worldmodel.audio.data import split_records

    sive, spk = upstream
    mod = "worldmodel.audio.extractors"
    setups = build_extractors([f"{mod}:sive_features", f"{mod}:speaker_embedding"],
                              [f"sive_features.run={sive}", f"speaker_embedding.run={spk}"])
    records = split_records(SourceConfig(kind="corpus", path=str(audio_corpus)), "test")[:3]
    result = preprocess(records, tmp_path / "shards", setups, sample_rate=16000,
                        shard_size=2)
    assert result.records == 3 and not result.skipped, result.summary()
    shards = ShardSource(tmp_path / "shards")
    sive_ext, spk_ext = (s.extractor for s in setups)
    for i in range(3):
        ex = shards[i]
        feats, emb = ex["sive_features"], ex["speaker_embedding"]
        assert feats.dtype == np.float32 and feats.shape[1] == sive_ext.dim
        assert emb.shape == (spk_ext.dim,)
        # The same utterance padded to a longer bucket: the same frames and embedding.
        rec = {"id": ex["id"], "sample_rate": 16000,
               "audio": load_audio(records[i]["audio_path"], 16000)[0]}
        sive_ext.pad *= 3
        spk_ext.pad *= 3
        try:
            np.testing.assert_allclose(sive_ext(rec)["sive_features"], feats, rtol=1e-5,
                                       atol=1e-5)
            np.testing.assert_allclose(spk_ext(rec)["speaker_embedding"], emb, rtol=1e-5,
                                       atol=1e-5)
        finally:
            sive_ext.pad //= 3
            spk_ext.pad //= 3



@pytest.mark.slow  # preprocesses two splits, then one run of the CVAE command
def test_trains_from_precomputed_shards(upstream, audio_corpus, tmp_path):
    """``--data.precomputed``: SIVE features and speaker embeddings read from shards give
    the encoders' own outputs on every batch row (so the loss is the on-the-fly one),
    the command trains on them, and shards of other runs are refused by name."""
    from common.data.features import build_extractors
    from common.data.preprocessing import preprocess
    from common.data.records import DataError
    from common.data.sources import SourceConfig
    from worldmodel.audio.cvae.data import make_data
    from worldmodel.audio.data import split_records

    sive, spk = upstream
    mod = "worldmodel.audio.extractors"
    setups = build_extractors([f"{mod}:sive_features", f"{mod}:speaker_embedding"],
                              [f"sive_features.run={sive}", f"speaker_embedding.run={spk}"])
    source = SourceConfig(kind="corpus", path=str(audio_corpus))
    for split in ("train", "validation"):
        result = preprocess(split_records(source, split), tmp_path / "pre" / split, setups,
                            sample_rate=16000, shard_size=8)
        assert result.index is not None and not result.skipped, result.summary()

    cfg = dataclasses.replace(tiny(), sive_run=str(sive), speaker_run=str(spk))
    cfg = resolve_data(dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, source=source, batch_size=4, max_seconds=8.0,
                                      bucket_seconds=(8.0,),
                                      precomputed=str(tmp_path / "pre"))))
    model = CvaeTrainee(cfg, rngs=nnx.Rngs(0))
    content, speaker = load_encoders(cfg)  # the runs' weights, as the program loads them
    nnx.update(model.content, content)
    nnx.update(model.speaker, speaker)
    _, eval_batches = make_data(cfg)
    rows = 0
    for b in eval_batches():
        keep = b["example_valid"]
        rows += int(keep.sum())
        fly = model.conditioning(b["audio"], b["audio_lengths"])
        pre = model.conditioning(b["audio"], b["audio_lengths"], b["sive_features"],
                                 b["speaker_embedding"])
        for x, y in zip(fly, pre, strict=True):
            np.testing.assert_allclose(np.asarray(y)[keep], np.asarray(x)[keep], rtol=1e-4,
                                       atol=2e-5)
    assert rows == len(split_records(source, "validation"))

    out = _train(audio_corpus, upstream, tmp_path, "pre", 2, tmp_path / "cache",
                 "--data.precomputed", str(tmp_path / "pre"))
    assert "done at step 2" in out

    other = dataclasses.replace(cfg, speaker_run=str(sive))
    with pytest.raises(DataError, match=r"its speaker_embedding come from the run .*speaker, "
                                        r"but this CVAE's --speaker-run is .*sive"):
        make_data(other)
