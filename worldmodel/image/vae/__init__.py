"""The image VAE: ``python -m worldmodel.train image-vae``."""
