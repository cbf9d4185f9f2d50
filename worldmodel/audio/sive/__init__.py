"""SIVE, the speaker-invariant voice encoder: the shared content encoder
(``common.speech.content``) trained with CTC while a speaker classifier behind a
gradient-reversal layer pushes speaker information out of its features."""
