"""The shared codec layer: what every codec in ``tokenizer`` uses (``alpha`` and ``snac``
sit on it and import nothing from each other).

- ``tokenizer``: ``CodecTokenizer``, the base of the codecs' tokenizers (load from a run
  directory, batched encode / decode, token-file checks), and ``find_run``.
- ``token_io``: ``CodecTokenFile``, the base of the token files, on the ``.npz``
  container; config digests; loudness normalisation with its gain.
- ``cli``: the command-line plumbing of ``infer`` / ``eval`` / ``train`` / ``tokens``.
- ``discriminators``: the MPD / MSD / complex-STFT discriminators and their config.
- ``residual``: the DAC residual unit; ``masks``: valid masks of left-padded batches.
- ``optim``: the DAC AdamW preset; ``train_logging``: example audio and run summaries.
"""
