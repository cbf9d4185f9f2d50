"""Latent diffusion for the world model: the training objectives (``objectives``: rectified
flow matching with a velocity target and logit-normal times, and v-prediction diffusion on
the continuous cosine schedule, behind one continuous-time interface with ``t = 0`` data and
``t = 1`` noise) and their samplers (``samplers``: Euler and Heun for flows, DDIM for
diffusion, classifier-free guidance as a wrapper of any ``model_fn(x_t, t, cond)``). The
denoiser networks that fill ``model_fn`` (DiT, UNet) are separate modules.
"""
