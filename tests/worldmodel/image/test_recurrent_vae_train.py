"""``python -m worldmodel.train recurrent-vae``: the real command on a few procedural
scenes, checkpoints and an exact resume, the refinement grid, and the evaluation
(quality per step, early exit)."""

import json

import pytest
from PIL import Image

from tests.worldmodel.audio.runs import run_command, train_losses
from worldmodel.image.recurrent_vae.evaluate import format_table
from worldmodel.image.recurrent_vae.evaluate import main as eval_main

FLAGS = ["--data.train.size", "16", "--data.train.count", "16", "--data.eval-count", "4",
         "--batch-size", "4", "--model.steps", "2", "--train.optim.total-steps", "4",
         "--train.optim.warmup-steps", "1", "--loss.kl-warmup-steps", "4",
         "--train.checkpoint.every", "2", "--train.eval-every", "2",
         "--train.eval-batches", "1", "--train.logging.log-every", "1"]


def _train(run_dir, name, steps, *extra):
    return run_command(["recurrent-vae", *FLAGS, "--steps", str(steps), "--train.run-dir",
                        str(run_dir), "--run-name", name, *extra], run_dir / "cache")


@pytest.mark.slow  # three runs of the command
def test_trains_checkpoints_resumes_and_evaluates(tmp_path):
    out = _train(tmp_path, "full", 4)
    assert "done at step 4" in out and "vae/psnr_first" in out and "eval/vae/psnr" in out
    grids = sorted((tmp_path / "full" / "media").rglob("vae_refinements.png"))
    assert [p.parent.name for p in grids] == ["step_0000000", "step_0000004"]
    assert Image.open(grids[0]).size == (4 * 17, 3 * 17)  # images, then 2 steps
    result = eval_main(["--run", str(tmp_path / "full"), "--max-steps", "3", "--thresholds",
                        "1e9", "0", "--json", str(tmp_path / "e.json"), "--grid",
                        str(tmp_path / "g.png")])
    assert json.loads((tmp_path / "e.json").read_text()) == result
    assert [s["steps"] for s in result["per_step"]] == [1, 2, 3]
    huge, zero = result["early_exit"]
    assert huge["mean_steps"] == 1 and huge["psnr"] == pytest.approx(
        result["per_step"][0]["psnr"], abs=1e-4)
    assert zero["mean_steps"] == 3 and zero["saved"] == -0.5 and zero["psnr"] == pytest.approx(
        result["per_step"][2]["psnr"], abs=1e-4)
    assert Image.open(tmp_path / "g.png").size == (4 * 17, 4 * 17)
    assert "early exit at 1e+09" in format_table(result)
    _train(tmp_path, "part", 2)
    _train(tmp_path, "part", 4, "--resume")
    full, part = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    for step in (3, 4):  # same data position, RNG, weights and KL counter
        assert part[step] == full[step], (step, part[step], full[step])
