"""``python -m worldmodel.train image-diffusion``: the real command on the latents of a
digits VAE trained here first (VAE -> diffusion chaining), checkpoints and an exact
resume, the UNet and the diffusion objective, the evaluation command, and the errors of
a run started without its VAE."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from tests.worldmodel.audio.runs import run_command, train_losses
from worldmodel.image.diffusion.config import tiny
from worldmodel.image.diffusion.data import resolve_data
from worldmodel.image.diffusion.evaluate import format_table, load_diffusion
from worldmodel.image.diffusion.evaluate import main as eval_main

DATA = ["--data.train.size", "16", "--data.train.count", "64", "--data.eval-count", "16",
        "--batch-size", "4"]
SCHEDULE = ["--train.optim.total-steps", "4", "--train.optim.warmup-steps", "1",
            "--train.checkpoint.every", "2", "--train.eval-every", "2",
            "--train.eval-batches", "1", "--train.logging.log-every", "1"]
DIFFUSION = [*DATA, *SCHEDULE, "--dit.dim", "16", "--dit.depth", "1", "--dit.num-heads", "2",
             "--unet.channels", "8", "--unet.num-heads", "2", "--unet.groups", "4",
             "--per-class", "2", "--sampling.steps", "2", "--latent-batches", "2"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A digits VAE of two steps at 16 px (f = 4: 4x4x4 latents)."""
    root = tmp_path_factory.mktemp("vae")
    run_command(["image-vae", "--preset", "digits", *DATA, *SCHEDULE, "--steps", "2",
                 "--train.run-dir", str(root), "--run-name", "vae"], root / "cache")
    return root / "vae"


def _train(vae, run_dir, name, steps, *extra):
    return run_command(["image-diffusion", "--vae-run", str(vae), *DIFFUSION, "--steps",
                        str(steps), "--train.run-dir", str(run_dir), "--run-name", name,
                        *extra], run_dir / "cache")


@pytest.mark.slow  # a VAE run and three diffusion runs of the command
def test_trains_on_vae_latents_checkpoints_and_resumes_exactly(vae_run, tmp_path):
    out = _train(vae_run, tmp_path, "full", 4)
    assert "done at step 4" in out and "eval/loss" in out
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    scored = {r["step"]: r for r in rows if "gen/class_accuracy" in r}
    assert sorted(scored) == [0, 2, 4]  # at the start, every eval_every steps, at the end
    assert all(0 <= r["gen/class_accuracy"] <= 1 and r["gen/frechet"] > 0
               for r in scored.values())
    grids = sorted((tmp_path / "full" / "media").rglob("diffusion_samples.png"))
    assert [p.parent.name for p in grids] == ["step_0000000", "step_0000002", "step_0000004"]
    assert Image.open(grids[0]).size == (2 * 17, 10 * 17)  # 2 per class, one row per class
    # chaining: the run holds the VAE's weights, frozen, and its latents are normalised
    model, cfg = load_diffusion(tmp_path / "full")
    assert cfg.vae_run == str(vae_run) and cfg.dit.input_size == 4 and cfg.dit.num_classes == 10
    from worldmodel.image.vae.training import load_vae

    vae, _ = load_vae(vae_run)
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model.vae, nnx.Param)),
                                 nnx.to_flat_state(nnx.state(vae, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a[...], b[...], err_msg=str(path))
    from worldmodel.image.diffusion.data import make_data

    train, _ = make_data(cfg)  # latent_batches = 2: the statistics of these two
    images = np.concatenate([next(train)["image"] for _ in range(2)])
    train.close()
    z = np.asarray(model.encode(jnp.asarray(images)))
    np.testing.assert_allclose(z.reshape(-1, 4).mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.reshape(-1, 4).std(0), 1.0, rtol=1e-3)
    _train(vae_run, tmp_path, "part", 2)
    _train(vae_run, tmp_path, "part", 4, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data position, RNG and weights
        assert part[step] == full[step], (step, part[step], full[step])


@pytest.mark.slow
def test_unet_with_diffusion_and_the_evaluation(vae_run, tmp_path):
    out = _train(vae_run, tmp_path, "unet", 2, "--denoiser", "unet", "--objective",
                 "diffusion", "--per-class", "8")
    assert "done at step 2" in out
    result = eval_main(["--run", str(tmp_path / "unet"), "--per-class", "8", "--guidance",
                        "1", "3", "--json", str(tmp_path / "e.json"), "--grid",
                        str(tmp_path / "g.png")])
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert result["denoiser"] == "unet" and result["objective"] == "diffusion"
    assert [s["guidance"] for s in result["samples"]] == [1.0, 3.0]
    for row in [*result["samples"], result["real"], result["reconstructed"]]:
        assert 0 <= row["class_accuracy"] <= 1 and np.isfinite(row["frechet"])
        assert 0 < row["nearest_train"] < 2
    assert result["real"]["split"] == "held-out" and result["real"]["images"] == 16
    assert Image.open(tmp_path / "g.png").size == (8 * 17, 10 * 17)  # 8 per class, 16 px
    assert "guidance 3" in format_table(result)


def test_nearest_distance():
    from worldmodel.image.diffusion.evaluate import nearest_distance

    train = np.random.default_rng(0).normal(size=(50, 64))
    assert nearest_distance(train[:5], train) == pytest.approx(0.0, abs=1e-6)
    shifted = train[:5] + 0.5
    want = np.mean([np.sqrt(np.min(np.sum((s - train) ** 2, 1)) / 64) for s in shifted])
    assert nearest_distance(shifted, train) == pytest.approx(want, rel=1e-9)


def test_a_run_without_its_vae_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="image-vae"):
        resolve_data(tiny())  # no runs/ at all
    with pytest.raises(FileNotFoundError, match=r"--vae-run .*not a run directory"):
        resolve_data(dataclasses.replace(tiny(), vae_run=str(tmp_path / "nope")))
