"""Training infrastructure shared by every model: configs, meshes and sharding, the
train step and loop, GAN pieces, checkpoints, logging and optimizers.

A package's ``train.py`` builds its model and loss and calls ``common.train.loop.train``.
"""
