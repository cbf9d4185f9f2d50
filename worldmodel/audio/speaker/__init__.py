"""Training the ECAPA-TDNN speaker encoder (``common.speech``) with AAM softmax on the
corpus speakers: ``python -m worldmodel.train speaker-encoder``."""
