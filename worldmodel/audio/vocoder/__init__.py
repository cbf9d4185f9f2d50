"""The world model's mel vocoder: Vocos (ConvNeXt backbone, magnitude + phase head,
iSTFT) from the speech front end's log-mel frames to 16 kHz waveforms;
``python -m worldmodel.train vocoder``, ``python -m worldmodel.eval vocoder``."""
