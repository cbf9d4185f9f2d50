"""Evaluate a trained world-model component: ``python -m worldmodel.eval <model> [options]``.

Models (each with ``--help``): ``speaker-encoder`` (equal error rate of verification
trials, identification accuracy), ``audio-sive`` (phoneme error rate on held-out
speakers; a linear speaker probe on its features against the same probe on its mel
input), ``audio-cvae`` (mel reconstruction; voice conversion's speaker similarity and
the phoneme error rate of converted mels), ``vocoder`` (mel and multi-resolution STFT
distances, PESQ-WB and STOI of re-synthesised held-out speech), ``image-vae`` (PSNR,
SSIM, KL per channel and latent statistics of held-out reconstructions),
``image-diffusion`` (class accuracy and a Frechet distance of generated digits under a
small digits classifier, per guidance scale; sampling time), ``recurrent-vae`` (PSNR and
SSIM against refinement steps; early exit's steps saved and quality), ``audio-diffusion``
(the mel statistics distance of generated speech to held-out speech).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from worldmodel.train import dispatch

MODELS = {
    "speaker-encoder": "worldmodel.audio.speaker.evaluate",
    "audio-sive": "worldmodel.audio.sive.evaluate",
    "audio-cvae": "worldmodel.audio.cvae.evaluate",
    "vocoder": "worldmodel.audio.vocoder.evaluate",
    "image-vae": "worldmodel.image.vae.evaluate",
    "image-diffusion": "worldmodel.image.diffusion.evaluate",
    "recurrent-vae": "worldmodel.image.recurrent_vae.evaluate",
    "audio-diffusion": "worldmodel.audio.diffusion.evaluate",
}


def main(argv: Sequence[str] | None = None):
    return dispatch("worldmodel.eval", __doc__, MODELS, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
