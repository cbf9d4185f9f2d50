"""Speech models shared by the packages above ``common``: the speaker encoder that the
world model conditions on and the TTS evaluation scores voices with, and the content
encoder (a CTC phoneme recogniser) under SIVE and the intelligibility scores.

Import from the modules: ``common.speech.config`` (``EcapaConfig``, ``MelFeatures``,
``ContentEncoderConfig``; no jax, for the commands' configs), ``common.speech.ecapa``
(``EcapaTdnn``), ``common.speech.content`` (``ContentEncoder``: Conformer + CTC),
``common.speech.features`` (``log_mel_frames``), ``common.speech.pooling``,
``common.speech.verification`` (trials, EER).
"""
