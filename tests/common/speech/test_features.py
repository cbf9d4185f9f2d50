"""The speech front end: librosa's log-mel on the valid frames of a left-padded batch."""

import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from common.speech.config import MelFeatures
from common.speech.features import log_mel_frames


def test_left_padded_rows_match_librosa_on_their_own_audio():
    feats = MelFeatures()
    embed = lambda audio, lengths: log_mel_frames(feats, audio, lengths)
    rng = np.random.default_rng(0)
    n, short = 8000, 4800  # the pad (3200) is a multiple of the hop: frames line up
    a = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, short).astype(np.float32)
    batch = np.zeros((2, n, 1), np.float32)
    batch[0, :, 0], batch[1, n - short:, 0] = a, b
    mel, valid = embed(jnp.asarray(batch), jnp.asarray([n, short]))
    assert mel.shape == (2, 1 + n // 160, 80) and valid.shape == (2, 1 + n // 160)

    def ref(x):
        m = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=160,
                                           win_length=400, n_mels=80, fmin=0.0,
                                           fmax=8000.0, center=True, pad_mode="constant")
        return np.log(np.maximum(m, 1e-6)).T

    # A frame is valid when its centre sample is (common.audio.stft.frame_mask): librosa's
    # last frame, centred one sample past the end, is not.
    for row, x in ((0, a), (1, b)):
        got = np.asarray(mel[row])[np.asarray(valid[row])]
        assert got.shape[0] == len(x) // 160
        np.testing.assert_allclose(got, ref(x)[:-1], rtol=1e-4, atol=1e-4)
    assert not np.any(np.asarray(mel[1])[~np.asarray(valid[1])])


def test_bad_window_is_named():
    with pytest.raises(ValueError, match="win_length"):
        MelFeatures(win_length=1024)
