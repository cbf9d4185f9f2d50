"""The tiny 16 kHz corpus the world model's audio trainers run on (built once per
session)."""

import dataclasses

import pytest

from common.data.corpus import build_corpus
from tests.worldmodel.audio.runs import CORPUS


@pytest.fixture(scope="session")
def audio_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("wm_audio") / "corpus"
    build_corpus(dataclasses.replace(CORPUS, out=out))
    return out
