"""The tiny 16 kHz corpus the world model's audio trainers run on, and the SIVE and
speaker-encoder runs trained on it (each built once per session; see ``runs``)."""

import dataclasses

import pytest

from common.data.corpus import build_corpus
from tests.worldmodel.audio.runs import CORPUS, run_command, sive_flags, speaker_flags


@pytest.fixture(scope="session")
def audio_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("wm_audio") / "corpus"
    build_corpus(dataclasses.replace(CORPUS, out=out))
    return out


@pytest.fixture(scope="session")
def audio_runs(audio_corpus, tmp_path_factory):
    """``{"sive": (run dir, stdout), "speaker": (...), "cache": dir}``: a 4-step SIVE run
    and a 4-step speaker-encoder run on the tiny corpus."""
    root = tmp_path_factory.mktemp("wm_audio_runs")
    cache = root / "cache"
    out = {"cache": cache}
    for key, flags in (("sive", sive_flags), ("speaker", speaker_flags)):
        stdout = run_command(flags(audio_corpus, root, key, 4), cache)
        out[key] = (root / key, stdout)
    return out
