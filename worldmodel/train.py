"""Train a world-model component: ``python -m worldmodel.train <model> [options]``.

Models (each with ``--help``): ``speaker-encoder`` (ECAPA-TDNN, AAM softmax),
``audio-sive`` (Conformer content encoder, CTC, reversed speaker adversary),
``audio-cvae`` (mel VAE over SIVE's content, F0 and a speaker embedding by FiLM; reads a
SIVE and a speaker-encoder run), ``vocoder`` (Vocos: log-mel frames to waveform;
``--gan`` adds the codecs' discriminators), ``image-vae`` (latent diffusion's
autoencoder layout, KL; ``--gan`` adds a PatchGAN), ``image-diffusion`` (a DiT or UNet
on an image VAE's latents; reads an image-vae run), ``recurrent-vae`` (a VAE whose
decoder refines its image with one shared cell, exiting early at inference),
``audio-diffusion`` (a 1-D DiT on an audio CVAE's latents, speaker-conditioned; reads
an audio-cvae run). The world model itself is planned (its issue is open). With no
options a model trains its ``tiny`` preset on the embedded data (the espeak corpus;
procedural scenes or digits for images).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

MODELS = {
    "speaker-encoder": "worldmodel.audio.speaker.train",
    "audio-sive": "worldmodel.audio.sive.train",
    "audio-cvae": "worldmodel.audio.cvae.train",
    "vocoder": "worldmodel.audio.vocoder.train",
    "image-vae": "worldmodel.image.vae.train",
    "image-diffusion": "worldmodel.image.diffusion.train",
    "recurrent-vae": "worldmodel.image.recurrent_vae.train",
    "audio-diffusion": "worldmodel.audio.diffusion.train",
}


def dispatch(command: str, doc: str, models: dict[str, str],
             argv: Sequence[str] | None = None):
    """Run ``models[argv[0]]``'s ``main(argv[1:])``; with no model (or ``--help``) print
    ``doc`` and the models; an unknown one exits 2 naming the choices."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (f"usage: python -m {command} <model> [options]\n"
             f"models: {', '.join(models)} (python -m {command} <model> --help)")
    if not argv or argv[0] in ("-h", "--help"):
        print(doc.strip() + "\n\n" + usage)
        return None
    name, rest = argv[0], argv[1:]
    if name not in models:
        print(f"{command}: unknown model {name!r}\n{usage}", file=sys.stderr)
        raise SystemExit(2)
    return importlib.import_module(models[name]).main(rest)


def main(argv: Sequence[str] | None = None):
    return dispatch("worldmodel.train", __doc__, MODELS, argv)


if __name__ == "__main__":
    main()
