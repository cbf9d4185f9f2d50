"""``python -m worldmodel.train image-vae``: the real command on a few procedural scenes,
with the PatchGAN joining mid-run; checkpoints, an exact resume across the GAN's start,
the held-out evaluation (PSNR, SSIM, KL per channel, latent statistics); a fixed image
set (digits) split into train and held-out."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.worldmodel.audio.runs import run_command, train_losses
from worldmodel.image.vae.config import tiny
from worldmodel.image.vae.data import split_sources
from worldmodel.image.vae.evaluate import format_table
from worldmodel.image.vae.evaluate import main as eval_main

FLAGS = ["--data.train.size", "16", "--data.train.count", "16", "--data.eval-count", "4",
         "--batch-size", "4", "--train.optim.total-steps", "4",
         "--train.optim.warmup-steps", "1", "--loss.kl-warmup-steps", "4",
         "--train.checkpoint.every", "2", "--train.eval-every", "2",
         "--train.eval-batches", "1", "--train.logging.log-every", "1",
         "--gan", "--gan.disc-start-step", "2", "--gan.r1-weight", "1.0",
         "--disc.channels", "4", "--disc.n-layers", "2"]


def _train(run_dir, name, steps, cache, *extra):
    return run_command(["image-vae", *FLAGS, "--steps", str(steps), "--train.run-dir",
                        str(run_dir), "--run-name", name, *extra], cache)


@pytest.mark.slow  # three runs of the command
def test_trains_checkpoints_and_resumes_exactly(tmp_path):
    cache = tmp_path / "cache"
    out = _train(tmp_path, "full", 4, cache)
    assert "done at step 4" in out and "gen/vae/psnr" in out and "eval/vae/psnr" in out
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    started = {r["step"]: r["disc/started"] for r in rows if "disc/started" in r}
    assert started == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}
    evals = [r for r in rows if "eval/vae/psnr" in r]
    assert evals and all(np.isfinite(r["eval/vae/psnr"]) for r in evals)
    # held-out images over their reconstructions, before training and at the end
    grids = sorted((tmp_path / "full" / "media").rglob("vae_reconstructions.png"))
    assert [p.parent.name for p in grids] == ["step_0000000", "step_0000004"]
    assert Image.open(grids[0]).size == (4 * 17, 2 * 17)  # 4 held-out images, 16 px + rule
    # the evaluation of the tiny checkpoint: every measure, in range, table, JSON, grid
    result = eval_main(["--run", str(tmp_path / "full"), "--count", "3", "--batch-size", "2",
                        "--json", str(tmp_path / "e.json"), "--grid", str(tmp_path / "g.png")])
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert result["images"] == 3 and result["latent_shape"] == [4, 4, 4]
    assert np.isfinite(result["psnr"]) and result["ssim"] is not None
    assert result["ms_ssim"] is None  # 16 px: too small for five scales
    assert len(result["kl_per_channel"]) == 4 and result["kl"] == pytest.approx(
        sum(result["kl_per_channel"]))
    assert Image.open(tmp_path / "g.png").size == (3 * 17, 2 * 17)
    assert "scale factor" in format_table(result)
    _train(tmp_path, "part", 2, cache)
    _train(tmp_path, "part", 4, cache, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data position, RNG, weights, KL counter and discriminator
        assert part[step] == full[step], (step, part[step], full[step])


def test_fixed_sets_hold_out_their_last_images():
    import dataclasses

    cfg = tiny()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, eval_count=97, train=dataclasses.replace(cfg.data.train, source="digits",
                                                           size=8, count=10_000)))
    train, held = split_sources(cfg.data)
    assert len(train) + len(held) == 1797 and len(held) == 97
    assert held[0]["id"] == "digits/1700" and train[len(train) - 1]["id"] == "digits/1699"
    scenes_train, scenes_held = split_sources(tiny().data)
    assert scenes_train[0]["id"] != scenes_held[0]["id"]  # another seed
