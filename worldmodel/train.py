"""Train a world-model component: ``python -m worldmodel.train <model> [options]``.

Models (each with ``--help``): ``speaker-encoder`` (ECAPA-TDNN, AAM softmax). SIVE,
the audio CVAE, the vocoder, the image VAE, the diffusion models and the world model
itself are planned (their issues are open). With no options a model trains its ``tiny``
preset on the embedded corpus.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

MODELS = {
    "speaker-encoder": "worldmodel.audio.speaker.train",
}


def usage() -> str:
    return (f"usage: python -m worldmodel.train <model> [options]\n"
            f"models: {', '.join(MODELS)} (python -m worldmodel.train <model> --help)")


def main(argv: Sequence[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + usage())
        return None
    name, rest = argv[0], argv[1:]
    if name not in MODELS:
        print(f"worldmodel.train: unknown model {name!r}\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    return importlib.import_module(MODELS[name]).main(rest)


if __name__ == "__main__":
    main()
