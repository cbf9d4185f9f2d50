"""Speech models shared by the packages above ``common``: the speaker encoder that the
world model conditions on and that the TTS evaluation scores voices with."""

from common.speech.ecapa import EcapaConfig, EcapaTdnn
from common.speech.features import MelFeatures
from common.speech.pooling import AttentiveStatsPool, masked_mean_std

__all__ = ["AttentiveStatsPool", "EcapaConfig", "EcapaTdnn", "MelFeatures", "masked_mean_std"]
