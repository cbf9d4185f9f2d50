"""Latent diffusion on images: a DiT or UNet on the latents of a trained image VAE."""
