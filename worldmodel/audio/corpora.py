"""The embedded corpus as the world model's audio presets read it.

A chain of stages must read one corpus: a CVAE's frozen SIVE and speaker encoder were
trained on its training split and it holds out the same speakers, and a vocoder is
scored on the same test split. So every preset names one of these two.
"""

from __future__ import annotations

import dataclasses

from common.data.sources import SourceConfig

DEFAULT = SourceConfig(corpus_sample_rate=16000, corpus_holdout_speakers=8)
"""The default runs' corpus: the default size at 16 kHz, 8 speakers held out."""
RECIPE = dataclasses.replace(DEFAULT, corpus_hours=2.0)
"""The CPU recipes' (and the base presets') corpus: 2 h."""
