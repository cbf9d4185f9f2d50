"""The world model's image side: the image VAE (``vae``), later its diffusion."""
