"""Every command answers ``--help`` and parses its flags before the heavy stacks load:
importing a command module imports no jax, flax, orbax, grain, datasets or wandb."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = ("common.data.build_corpus", "common.data.preprocess", "common.train.list_runs",
            "common.train.plot_curves",
            "tokenizer.alpha.infer", "tokenizer.alpha.eval", "tokenizer.alpha.train",
            "tokenizer.snac.infer", "tokenizer.snac.convert", "tokenizer.snac.tokens",
            "tokenizer.snac.train", "worldmodel.train", "worldmodel.eval",
            "worldmodel.audio.speaker.train", "worldmodel.audio.speaker.evaluate",
            "worldmodel.audio.sive.train", "worldmodel.audio.sive.evaluate",
            "worldmodel.audio.cvae.train", "worldmodel.audio.cvae.evaluate",
            "worldmodel.audio.vocoder.train", "worldmodel.audio.vocoder.evaluate",
            "worldmodel.image.vae.train", "worldmodel.image.vae.evaluate",
            "worldmodel.image.diffusion.train", "worldmodel.image.diffusion.evaluate",
            "worldmodel.image.recurrent_vae.train", "worldmodel.image.recurrent_vae.evaluate",
            "worldmodel.audio.diffusion.train", "worldmodel.audio.diffusion.evaluate")
HEAVY = ("jax", "flax", "orbax", "grain", "datasets", "wandb")


@pytest.mark.parametrize("module", COMMANDS)
def test_command_module_imports_no_heavy_stack(module):
    code = (f"import sys, {module}; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]", f"{module} imports {out.strip()} before parsing its flags"
