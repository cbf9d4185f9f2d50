"""The CVAE's inputs: the runs it stands on and its speech batches.

``resolve_data`` finds the SIVE and speaker-encoder runs (``--sive-run``,
``--speaker-run``; empty: the newest of each under ``runs/``), checks their kinds, and
copies what the CVAE needs from their saved configs: the mel features SIVE reads (the
mel the CVAE rebuilds), SIVE's encoder config, the speaker encoder's features and
config, and the sizes that follow from them. Batches are whole utterances padded to
whole steps of SIVE's 4x subsampling (so mel, latent and content frames line up) with
F0 and voicing per mel frame. With ``data.precomputed`` the batches also carry SIVE's
features (``sive_features [B, T4, C]``, on the content frame grid) and the speaker
embedding (``speaker_embedding [B, S]``) read from preprocessed shards, checked to come
from the same runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from common.config import config_from_dict
from common.data.extractors import F0
from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline
from common.data.shards import ShardSource
from common.data.source_base import RecordSource
from common.train.runs import pick_run
from worldmodel.audio.cvae.config import CvaeConfig
from worldmodel.audio.data import precomputed_shards, resolve_source, split_records
from worldmodel.audio.sive.config import KIND as SIVE_KIND
from worldmodel.audio.sive.config import SiveConfig
from worldmodel.audio.speaker.config import KIND as SPEAKER_KIND
from worldmodel.audio.speaker.config import SpeakerEncoderConfig

COMMAND = "worldmodel.train audio-cvae"
SUBSAMPLING = 4  # SIVE's front end: one content frame per 4 mel frames
# What the shards of ``data.precomputed`` give: extractor (= field) -> the run it reads.
PRECOMPUTED = {"sive_features": ("sive_run", "--sive-run"),
               "speaker_embedding": ("speaker_run", "--speaker-run")}


def upstream_run(run: str, kind: str, cls: type, flag: str, model: str):
    """``(run directory, its saved config)`` of the stage ``flag`` names."""
    path = pick_run(run, kind, f"{COMMAND} {flag}", flag=flag,
                    train_command=f"python -m worldmodel.train {model}")
    try:
        saved = json.loads((Path(path) / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{flag} {path}: no config.json (not a finished "
                                f"{model} run?)") from None
    return path, config_from_dict(cls, saved)


def resolve_data(cfg: CvaeConfig) -> CvaeConfig:
    sive_path, sive = upstream_run(cfg.sive_run, SIVE_KIND, SiveConfig, "--sive-run",
                                   "audio-sive")
    spk_path, spk = upstream_run(cfg.speaker_run, SPEAKER_KIND, SpeakerEncoderConfig,
                                 "--speaker-run", "speaker-encoder")
    rate, spk_rate = sive.features.sample_rate, spk.features.sample_rate
    if rate != spk_rate:
        raise ValueError(f"--sive-run {sive_path} reads {rate} Hz audio but --speaker-run "
                         f"{spk_path} reads {spk_rate} Hz: the CVAE feeds both the same "
                         f"audio")
    model = dataclasses.replace(cfg.model, n_mels=sive.features.n_mels,
                                content_dim=sive.encoder.dim,
                                speaker_dim=spk.model.embed_dim)
    data = dataclasses.replace(cfg.data, source=resolve_source(cfg.data.source, rate))
    return dataclasses.replace(
        cfg, sive_run=str(sive_path), speaker_run=str(spk_path),
        phoneme_vocab=sive.data.phoneme_vocab, features=sive.features,
        content=sive.encoder, speaker_features=spk.features, speaker=spk.model,
        model=model, data=data)


def pipeline_config(cfg: CvaeConfig) -> PipelineConfig:
    data, feats = cfg.data, cfg.features
    f0 = F0(sample_rate=feats.sample_rate, hop_length=feats.hop_length,
            frame_length=data.f0_frame_length, fmin=data.f0_fmin, fmax=data.f0_fmax)
    step = SUBSAMPLING * feats.hop_length
    pre = bool(data.precomputed)
    return PipelineConfig(
        sample_rate=feats.sample_rate, batch_size=data.batch_size, segment_seconds=None,
        max_seconds=data.max_seconds, long_utterances="skip" if pre else "crop",
        bucket_seconds=data.bucket_seconds, frame_hops=(step,),
        loudness_dbfs=data.loudness_dbfs, f0=f0, seed=cfg.train.seed,
        worker_count=data.workers, bad_input=data.source.bad_input,
        precomputed=("speaker_embedding",) if pre else (),
        precomputed_frames=("sive_features",) if pre else (),
        precomputed_hop=step if pre else None)


def precomputed_source(cfg: CvaeConfig, split: str) -> ShardSource:
    """The shards of ``split`` under ``cfg.data.precomputed``, checked to hold the
    features of the config's SIVE and speaker-encoder runs at its sample rate."""
    made_by = {name: (getattr(cfg, field), flag) for name, (field, flag) in PRECOMPUTED.items()}
    return precomputed_shards(Path(cfg.data.precomputed) / split, made_by,
                              cfg.features.sample_rate, "this CVAE")


def make_data(cfg: CvaeConfig) -> tuple[Iterator[dict], Callable[[], Iterator[dict]]]:
    """``(train iterator, eval iterator factory)`` for a resolved config: every
    utterance of the training and evaluation splits."""
    data = cfg.data
    pcfg = pipeline_config(cfg)
    eval_cfg = dataclasses.replace(pcfg, worker_count=0)
    if data.precomputed:
        train = precomputed_source(cfg, data.train_split)
        held = precomputed_source(cfg, data.eval_split)
        return make_pipeline(train, pcfg), lambda: iterate_eval(held, eval_cfg)
    train = split_records(data.source, data.train_split)
    held = split_records(data.source, data.eval_split)
    return (make_pipeline(RecordSource(train, data.train_split), pcfg),
            lambda: iterate_eval(RecordSource(held, data.eval_split), eval_cfg))
