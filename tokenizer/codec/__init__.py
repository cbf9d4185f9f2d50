"""The shared codec layer: what every codec in ``tokenizer`` uses (``alpha`` and ``snac``
sit on it and import nothing from each other).

- ``tokenizer``: ``CodecTokenizer``, the base of the codecs' tokenizers (load from a run
  directory of the codec's kind, batched encode / decode, token-file checks).
- ``token_io``: ``CodecTokenFile``, the base of the token files, on the ``.npz``
  container; config digests; loudness normalisation with its gain.
- ``cli``: the commands' shared command line (tyro option dataclasses, the
  ``encode|decode|roundtrip`` subcommands, the exit status); jax-free, so ``--help`` is
  instant. ``file_commands``: what ``infer`` / ``tokens`` do with input files and folders.
- ``discriminators``: the MPD / MSD / complex-STFT discriminators; ``configs``: their
  config, jax-free (the commands import it before parsing).
- ``residual``: the DAC residual unit; ``masks``: valid masks of left-padded batches.
- ``optim``: the DAC AdamW preset; ``train_logging``: example audio and run summaries.
"""
