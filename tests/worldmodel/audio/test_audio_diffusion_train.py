"""``python -m worldmodel.train audio-diffusion``: the real command over a CVAE run that
stands on the session's SIVE and speaker-encoder runs (CVAE -> diffusion chaining, the
vocoder run for logged audio), checkpoints and an exact resume, the mel statistics
distances it logs, and the errors of a run started without its CVAE."""

import dataclasses
import json

import numpy as np
import pytest
from flax import nnx

from tests.worldmodel.audio.runs import SHARED_RUNS, run_command, train_losses
from worldmodel.audio.diffusion.config import tiny
from worldmodel.audio.diffusion.data import resolve_data

pytestmark = SHARED_RUNS

SCHEDULE = ["--train.optim.warmup-steps", "1", "--train.logging.log-every", "1",
            "--train.eval-batches", "1", "--train.optim.total-steps", "4",
            "--train.checkpoint.every", "2", "--train.eval-every", "2"]


@pytest.fixture(scope="module")
def cvae_run(audio_runs, audio_corpus, tmp_path_factory):
    """A 2-step CVAE over the session's SIVE and speaker runs, and a 2-step vocoder."""
    root = tmp_path_factory.mktemp("cvae")
    (sive, _), (spk, _) = audio_runs["sive"], audio_runs["speaker"]
    data = ["--data.source.kind", "corpus", "--data.source.path", str(audio_corpus),
            "--batch-size", "4"]
    run_command(["audio-cvae", "--sive-run", str(sive), "--speaker-run", str(spk), *data,
                 "--data.max-seconds", "4.0", "--data.bucket-seconds", "4.0", *SCHEDULE,
                 "--steps", "2", "--train.run-dir", str(root), "--run-name", "cvae"],
                root / "cache")
    run_command(["vocoder", *data, "--data.segment-seconds", "0.5", *SCHEDULE, "--steps",
                 "2", "--train.run-dir", str(root), "--run-name", "vocoder"], root / "cache")
    return root / "cvae", root / "vocoder"


def _train(runs, run_dir, name, steps, *extra):
    cvae, vocoder = runs
    return run_command(["audio-diffusion", "--vae-run", str(cvae), "--vocoder-run",
                        str(vocoder), *SCHEDULE, "--dit.dim", "16", "--dit.depth", "1",
                        "--dit.num-heads", "2", "--sampling.steps", "2", "--latent-batches",
                        "2", "--sample-batches", "1", "--steps", str(steps),
                        "--train.run-dir", str(run_dir), "--run-name", name, *extra],
                       run_dir / "cache")


@pytest.mark.slow  # a CVAE run, a vocoder run and three diffusion runs of the command
def test_trains_on_cvae_latents_checkpoints_and_resumes_exactly(cvae_run, tmp_path):
    out = _train(cvae_run, tmp_path, "full", 4)
    assert "done at step 4" in out and "eval/loss" in out
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    scored = {r["step"]: r for r in rows if "gen/mel_frechet" in r}
    assert sorted(scored) == [0, 2, 4]
    for r in scored.values():
        assert all(np.isfinite(r[k]) and r[k] >= 0 for k in
                   ("gen/mel_frechet", "gen/recon_mel_frechet", "gen/prior_mel_frechet"))
    media = tmp_path / "full" / "media"
    assert sorted(p.parent.name for p in media.rglob("diffusion_generated_mel.png")) == [
        "step_0000000", "step_0000002", "step_0000004"]
    assert len(list(media.rglob("diffusion_generated.wav"))) == 3  # through the vocoder
    # chaining: the run's config holds the CVAE's, the denoiser sized from it
    cfg = json.load(open(tmp_path / "full" / "config.json"))
    cvae_cfg = json.load(open(cvae_run[0] / "config.json"))
    assert cfg["vae_run"] == str(cvae_run[0]) and cfg["cvae"]["model"] == cvae_cfg["model"]
    assert cfg["dit"]["in_channels"] == cvae_cfg["model"]["latent_dim"]
    assert cfg["dit"]["cond_dim"] == cvae_cfg["model"]["speaker_dim"]
    # the frozen CVAE's weights are the CVAE run's
    from common.config import config_from_dict
    from common.train.checkpoint import load_model
    from worldmodel.audio.cvae.config import CvaeConfig
    from worldmodel.audio.cvae.training import CvaeTrainee
    from worldmodel.audio.diffusion.config import AudioDiffusionConfig
    from worldmodel.audio.diffusion.training import AudioDiffusionTrainee

    model, _ = load_model(tmp_path / "full", lambda d: AudioDiffusionTrainee(
        config_from_dict(AudioDiffusionConfig, d), rngs=nnx.Rngs(0)))
    cvae, _ = load_model(cvae_run[0], lambda d: CvaeTrainee(config_from_dict(CvaeConfig, d),
                                                            rngs=nnx.Rngs(0)))
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model.cvae, nnx.Param)),
                                 nnx.to_flat_state(nnx.state(cvae, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a[...], b[...], err_msg=str(path))
    from worldmodel.audio.diffusion.evaluate import format_table
    from worldmodel.audio.diffusion.evaluate import main as eval_main

    result = eval_main(["--run", str(tmp_path / "full"), "--batches", "1", "--guidance", "2",
                        "--json", str(tmp_path / "e.json")])
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert result["utterances"] >= 1 and result["guidance"] == 2.0
    assert all(np.isfinite(result[k]) for k in ("mel_frechet", "recon_mel_frechet",
                                                 "prior_mel_frechet"))
    assert "prior samples decoded" in format_table(result)
    _train(cvae_run, tmp_path, "part", 2)
    _train(cvae_run, tmp_path, "part", 4, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data position, RNG and weights
        assert part[step] == full[step], (step, part[step], full[step])


def test_a_run_without_its_cvae_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="audio-cvae"):
        resolve_data(tiny())
    with pytest.raises(FileNotFoundError, match=r"--vae-run .*not a run directory"):
        resolve_data(dataclasses.replace(tiny(), vae_run=str(tmp_path / "nope")))


@pytest.mark.slow  # preprocesses a split through two runs' encoders
def test_trains_from_precomputed_latents(cvae_run, audio_runs, audio_corpus, tmp_path):
    """``--precomputed``: the CVAE's latents and the speaker embedding read from shards
    equal what the frozen CVAE computes on every batch row, so the training loss on them
    is the on-the-fly one; shards of another CVAE are refused by name. (In-process: the
    command's own path through ``make_data`` is the one exercised here.)"""
    import jax

    from common.data.features import build_extractors
    from common.data.preprocessing import preprocess
    from common.data.records import DataError
    from common.data.sources import SourceConfig
    from worldmodel.audio.data import split_records
    from worldmodel.audio.diffusion.data import make_data
    from worldmodel.audio.diffusion.training import (
        AudioDiffusionTrainee,
        load_cvae_state,
        make_loss,
    )

    cvae, _ = cvae_run
    spk = audio_runs["speaker"][0]
    mod = "worldmodel.audio.extractors"
    setups = build_extractors([f"{mod}:cvae_latents", f"{mod}:speaker_embedding"],
                              [f"cvae_latents.run={cvae}", f"speaker_embedding.run={spk}"])
    source = SourceConfig(kind="corpus", path=str(audio_corpus))
    held = split_records(source, "validation")
    pre = tmp_path / "pre"
    for split in ("train", "validation"):  # the train split: its first 8 utterances
        records = held if split == "validation" else split_records(source, split)[:8]
        result = preprocess(records, pre / split, setups, sample_rate=16000, shard_size=8)
        assert result.index is not None and not result.skipped, result.summary()
    assert setups[0].extractor.dim == 2 * 8  # mean and log-variance of the tiny CVAE

    cfg = resolve_data(dataclasses.replace(tiny(), vae_run=str(cvae)))
    pre_cfg = dataclasses.replace(cfg, precomputed=str(pre))
    model = AudioDiffusionTrainee(cfg, rngs=nnx.Rngs(0))
    nnx.update(model.cvae, load_cvae_state(cfg))
    loss_fn = nnx.jit(make_loss(cfg))
    rows = 0
    for b in make_data(pre_cfg)[1]():
        keep = b["example_valid"]
        rows += int(keep.sum())
        fly = {k: v for k, v in b.items() if k not in ("cvae_latents", "speaker_embedding")}
        mean, logvar, valid, speaker = model.latents(b)
        mean_f, logvar_f, valid_f, speaker_f = model.latents(fly)
        np.testing.assert_array_equal(np.asarray(valid)[keep], np.asarray(valid_f)[keep])
        v = np.asarray(valid)[keep]
        for x, y in ((mean, mean_f), (logvar, logvar_f)):
            np.testing.assert_allclose(np.asarray(x)[keep][v], np.asarray(y)[keep][v],
                                       rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(np.asarray(speaker)[keep], np.asarray(speaker_f)[keep],
                                   rtol=1e-4, atol=2e-5)
        if keep.all():  # a full batch: the training loss is the same either way
            key = jax.random.key(3)
            assert float(loss_fn(model, b, key)[0]) == pytest.approx(
                float(loss_fn(model, fly, key)[0]), rel=1e-4)
    # whole utterances only: those longer than the CVAE run's max_seconds are skipped
    assert rows == sum(r["duration"] <= cfg.cvae.data.max_seconds for r in held) > 0
    train = next(iter(make_data(pre_cfg)[0]))
    assert train["cvae_latents"].shape[-1] == 16 and "speaker_embedding" in train
    other = dataclasses.replace(pre_cfg, vae_run=str(spk))
    with pytest.raises(DataError, match=r"its cvae_latents come from the run .*cvae, but "
                                        r"this audio diffusion's --vae-run is .*speaker"):
        make_data(other)
