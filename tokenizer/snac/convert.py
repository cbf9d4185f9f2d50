"""Official SNAC weights into a run directory: ``python -m tokenizer.snac.convert SRC OUT``.

    python -m tokenizer.snac.convert snac_24khz/ runs/snac24-converted
    python -m tokenizer.snac.convert weights.safetensors runs/x --config config.json

SRC is a downloaded model folder (``config.json`` + ``pytorch_model.bin`` or
``model.safetensors``, as on the Hugging Face hub: hubertsiuzdak/snac_24khz, _32khz,
_44khz) or a weights file with ``--config``. Reading needs no PyTorch. OUT becomes a
run directory with one orbax checkpoint (step 0) and its config, which
``tokenizer.snac.infer``, ``SnacTokenizer.from_run`` and ``tokenizer.snac.train
--init-from`` load like any trained run. The name mapping and the checks are in
``tokenizer.snac.pytorch_weights``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import tyro

from common.console import setup_console
from tokenizer.codec.cli import exit_with, parse

PROG = "python -m tokenizer.snac.convert"


@dataclasses.dataclass(frozen=True)
class ConvertArgs:
    """The flags of ``python -m tokenizer.snac.convert``."""

    src: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="SRC")]
    """model folder (config.json + weights) or a weights file"""
    out: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="OUT")]
    """output run directory"""
    config: str | None = None
    """the model's config.json (default: next to SRC)"""
    verbose: bool = False
    """show the libraries' start-up logs (also TRC_VERBOSE=1)"""


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse(ConvertArgs, argv, prog=PROG, description=__doc__)
    setup_console(args.verbose)
    from flax import nnx

    from common.config import config_to_dict
    from common.train.checkpoint import Checkpointer, write_config_json
    from common.train.runs import write_run_info
    from tokenizer.snac.pytorch_weights import load_pretrained
    from tokenizer.snac.train_config import SnacConfig

    model = load_pretrained(args.src, args.config)
    # The published models were trained on audio as recorded: no loudness change when
    # this run encodes (a fine-tuning run sets its own).
    cfg = SnacConfig(model=model.cfg,
                     data=dataclasses.replace(SnacConfig().data, loudness_dbfs=None))
    config = config_to_dict(cfg)
    ckpt = Checkpointer(args.out)
    ckpt.save(0, {"model": nnx.state(model)}, config=config, force=True)
    ckpt.close()
    write_config_json(args.out, config)
    write_run_info(args.out, "tokenizer.snac", weights="converted", source=args.src, config=cfg)
    print(f"converted {args.src} ({model.cfg.sampling_rate} Hz, "
          f"{model.cfg.bitrate / 1000:.2f} kbit/s) -> {args.out}", flush=True)
    return Path(args.out)


if __name__ == "__main__":
    exit_with(lambda: 1 if main(sys.argv[1:]) else 0)
