"""Audio diffusion's inputs: the CVAE run it stands on and that run's speech batches.

``resolve_data`` finds the CVAE run (``--vae-run``; empty: the newest audio CVAE under
``runs/``, none is a clear error naming the command that trains one) and the optional
vocoder run, copies the CVAE's config (which holds its SIVE and speaker encoders') and
sizes the DiT from it: latent channels in, the speaker embedding as its condition
vector. Batches are the CVAE's (``worldmodel.audio.cvae.data``): left-padded audio
with F0 and voicing; mels, content, speaker embeddings and latents are computed in the
train step by the frozen CVAE.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from common.config import config_from_dict
from common.train.runs import pick_run
from worldmodel.audio.cvae.config import KIND as CVAE_KIND
from worldmodel.audio.cvae.config import CvaeConfig
from worldmodel.audio.diffusion.config import AudioDiffusionConfig

COMMAND = "worldmodel.train audio-diffusion"


def resolve_data(cfg: AudioDiffusionConfig) -> AudioDiffusionConfig:
    path = pick_run(cfg.vae_run, CVAE_KIND, f"{COMMAND} --vae-run", flag="--vae-run",
                    train_command="python -m worldmodel.train audio-cvae")
    try:
        cvae = config_from_dict(CvaeConfig, json.loads((Path(path) / "config.json").read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"--vae-run {path}: no config.json (not a finished "
                                f"audio-cvae run?)") from None
    vocoder = ""
    if cfg.vocoder_run:
        from worldmodel.audio.vocoder.config import KIND as VOCODER_KIND
        from worldmodel.audio.vocoder.config import VocoderConfig

        vocoder = str(pick_run(cfg.vocoder_run, VOCODER_KIND, f"{COMMAND} --vocoder-run",
                               flag="--vocoder-run",
                               train_command="python -m worldmodel.train vocoder"))
        voc = config_from_dict(VocoderConfig,
                               json.loads((Path(vocoder) / "config.json").read_text()))
        if voc.features != cvae.features:
            raise ValueError(f"--vocoder-run {vocoder} reads other mels than the CVAE of "
                             f"--vae-run {path} makes ({voc.features} against "
                             f"{cvae.features})")
    if cfg.batch_size:
        cvae = dataclasses.replace(cvae, data=dataclasses.replace(cvae.data,
                                                                  batch_size=cfg.batch_size))
    dit = dataclasses.replace(cfg.dit, in_channels=cvae.model.latent_dim,
                              cond_dim=cvae.model.speaker_dim, num_classes=0)
    return dataclasses.replace(cfg, vae_run=str(path), vocoder_run=vocoder, cvae=cvae,
                               dit=dit, batch_size=cvae.data.batch_size)


def make_data(cfg: AudioDiffusionConfig
              ) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)``: the CVAE run's splits, or with
    ``precomputed`` their shards, whose batches add ``cvae_latents [B, T4, 2 Z]`` and
    ``speaker_embedding [B, S]``."""
    from worldmodel.audio.cvae.data import make_data as cvae_data

    if not cfg.precomputed:
        return cvae_data(cfg.cvae)
    from common.data.pipeline import iterate_eval, make_pipeline
    from worldmodel.audio.cvae.data import SUBSAMPLING, pipeline_config
    from worldmodel.audio.data import precomputed_shards

    cvae = cfg.cvae
    pcfg = dataclasses.replace(
        pipeline_config(dataclasses.replace(cvae, data=dataclasses.replace(
            cvae.data, precomputed=""))),
        long_utterances="skip", precomputed=("speaker_embedding",),
        precomputed_frames=("cvae_latents",),
        precomputed_hop=SUBSAMPLING * cvae.features.hop_length)
    made_by = {"cvae_latents": (cfg.vae_run, "--vae-run"),
               "speaker_embedding": (cvae.speaker_run, "CVAE's --speaker-run")}

    def shards(split):
        return precomputed_shards(Path(cfg.precomputed) / split, made_by,
                                  cvae.features.sample_rate, "this audio diffusion")

    train, held = shards(cvae.data.train_split), shards(cvae.data.eval_split)
    return (make_pipeline(train, pcfg),
            lambda: iterate_eval(held, dataclasses.replace(pcfg, worker_count=0)))
