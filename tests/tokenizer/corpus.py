"""The tiny espeak corpus the codecs' end-to-end runs train on (alpha and SNAC)."""

from common.data.corpus import CorpusConfig

SR = 24000
CORPUS = CorpusConfig(hours=1 / 45, sample_rate=SR, languages=("en-us", "de"),
                      num_speakers=4, seed=5, valid_fraction=0.25, test_fraction=0.0,
                      holdout_speakers=0, holdout_languages=(), shard_size=4, workers=1,
                      max_sentences=1)
