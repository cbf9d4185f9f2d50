"""Latent diffusion on speech: a 1-D DiT on the latents of a trained audio CVAE."""
