"""Speech models shared by the packages above ``common``: the speaker encoder that the
world model conditions on and that the TTS evaluation scores voices with.

Import from the modules: ``common.speech.config`` (``EcapaConfig``, ``MelFeatures``;
no jax, for commands' configs), ``common.speech.ecapa`` (``EcapaTdnn``),
``common.speech.features`` (``log_mel_frames``), ``common.speech.pooling``,
``common.speech.verification`` (trials, EER).
"""
