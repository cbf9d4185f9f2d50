"""The audio CVAE: a speaker-conditioned VAE over mel spectrograms. Its decoder
rebuilds the mel from a latent sequence, SIVE's content features and F0, with the
speaker brought in by FiLM from a speaker embedding; another speaker's embedding at
inference is voice conversion."""
