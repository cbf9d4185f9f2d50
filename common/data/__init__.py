"""Data: the embedded espeak-ng speech corpus, dataset sources and grain pipelines."""
