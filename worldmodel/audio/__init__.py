"""The world model's audio side: the speaker encoder's training (the model itself is
``common.speech``, shared with the TTS evaluation); SIVE, the audio CVAE and the
vocoder are planned (issue 20)."""
