"""The grain pipeline from records to batches: modes, tokens, skips, shards and resume."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from absl import flags

from common.data import grain_utils
from common.data.bad_input import BadInputConfig, BadInputError
from common.data.batching import frame_valid
from common.data.pipeline import PipelineConfig, iterate_eval, make_pipeline, source_durations
from common.data.pipeline_report import EmptyPipelineError
from common.data.records import DataError, make_record
from common.data.transforms import normalize_loudness, random_crop, rms_dbfs, tokenize
from common.data.vocab import EOS, Vocab

SR = 16000
N_UTT = 14
# distinct lengths (samples) identify an utterance in a batch by its audio_lengths
LENGTHS = [int(SR * s) + k for k, s in enumerate(np.linspace(0.3, 2.9, N_UTT))]
TEXTS = [("hello world " * (1 + k % 3)).strip() for k in range(N_UTT)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``N_UTT`` noise utterances (16 kHz, float) with text, phonemes and a speaker."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    recs, wavs = [], []
    for k, n in enumerate(LENGTHS):
        wav = (0.05 * rng.standard_normal(n)).astype(np.float32)
        path = root / f"u{k:02d}.wav"
        sf.write(path, wav, SR, subtype="FLOAT")
        wavs.append(wav)
        recs.append(make_record(id=f"c/u{k:02d}", audio_path=str(path), text=TEXTS[k],
                                phonemes=TEXTS[k].replace("o", "oʊ"), speaker=f"s{k % 3}",
                                duration=n / SR if k % 2 else -1.0))
    return recs, wavs


def cfg_of(**kw) -> PipelineConfig:
    base = dict(sample_rate=SR, batch_size=4, max_seconds=3.0, bucket_seconds=(1.0, 2.0),
                frame_hops=(320, 640), loudness_dbfs=None, process_index=0,
                process_count=1, read_threads=0, num_epochs=1)
    base.update(kw)
    return PipelineConfig(**base)


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_batches_equal(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def check_masks(b):
    n = b["audio"].shape[1]
    np.testing.assert_array_equal(b["audio_valid"].sum(1), b["audio_lengths"])
    assert not b["audio"][~b["audio_valid"]].any()  # left padding is zeros
    assert b["audio_valid"][:, -1][b["audio_lengths"] > 0].all()  # valid samples come last
    for h in (320, 640):
        assert n % h == 0
        np.testing.assert_array_equal(b[f"valid_{h}"], frame_valid(b["audio_lengths"], n, h))


# --------------------------------------------------------------------------- modes


def test_segment_batches_and_deterministic_crops(corpus):
    recs, wavs = corpus
    cfg = cfg_of(segment_seconds=1.0, num_epochs=2)
    batches = list(make_pipeline(recs, cfg))
    assert len(batches) == 2 * (N_UTT // 4)
    for b in batches:
        assert b["audio"].shape == (4, 16000, 1) and b["audio"].dtype == np.float32
        assert b["audio_valid"].dtype == bool and b["audio_lengths"].dtype == np.int32
        assert b["valid_320"].shape == (4, 50) and b["valid_640"].shape == (4, 25)
        assert b["example_valid"].all() and "phonemes" not in b
        check_masks(b)
    assert_batches_equal(batches, list(make_pipeline(recs, cfg)))
    other = list(make_pipeline(recs, dataclasses.replace(cfg, seed=1)))
    assert not all(np.array_equal(x["audio"], y["audio"])
                   for x, y in zip(batches, other, strict=True))

    # each row is a window of its utterance; the window depends on (seed, epoch, index)
    # only, not on how utterances are grouped into batches
    rows = {}
    for bs in (2, 4):
        ev = list(iterate_eval(recs, dataclasses.replace(cfg, batch_size=bs)))
        got = np.concatenate([b["audio"][..., 0] for b in ev])[:N_UTT]
        lens = np.concatenate([b["audio_lengths"] for b in ev])[:N_UTT]
        rows[bs] = got
        for k in range(N_UTT):
            assert lens[k] == min(LENGTHS[k], 16000)
            seg = got[k, 16000 - lens[k]:]
            starts = np.flatnonzero(wavs[k] == seg[0])
            assert any(np.array_equal(wavs[k][s:s + lens[k]], seg) for s in starts)
    np.testing.assert_array_equal(rows[2], rows[4])


def test_bucketed_eval_sees_every_utterance_once(corpus):
    recs, _ = corpus
    cfg = cfg_of(batch_size=4)
    it = iterate_eval(recs, cfg)
    batches = list(it)
    assert len(batches) == 4  # 14 utterances -> 3 full batches and one padded
    shapes = {b["audio"].shape[1] for b in batches}
    assert shapes <= {16000, 32000, 48000} and len(shapes) >= 2
    lengths = np.concatenate([b["audio_lengths"][b["example_valid"]] for b in batches])
    assert sorted(lengths) == sorted(LENGTHS)
    assert sum(int(b["example_valid"].sum()) for b in batches) == N_UTT
    last = batches[-1]
    assert not last["example_valid"].all() and not last["audio"][~last["example_valid"]].any()
    for b in batches:
        check_masks(b)
        assert b["audio_lengths"].max() <= b["audio"].shape[1]
    assert it.stats.total_skipped == 0


def test_f0_per_frame_of_the_padded_rows(corpus):
    """``f0``/``voiced`` come per frame of the F0 hop, the extractor's output on each
    left-padded row (a pure tone reads as its pitch on its valid frames), zero for the
    padding rows; the extractor must run at the pipeline's rate."""
    from common.data.extractors import F0

    ext = F0(sample_rate=SR, hop_length=320, frame_length=640, fmin=60.0, fmax=500.0)
    recs, _ = corpus
    batches = list(iterate_eval(recs, cfg_of(batch_size=4, f0=ext)))
    for b in batches:
        n = b["audio"].shape[1]
        assert b["f0"].shape == b["voiced"].shape == (4, 1 + n // 320)
        assert b["f0"].dtype == np.float32 and b["voiced"].dtype == bool
        for i in np.flatnonzero(b["example_valid"]):
            row = b["audio"][i].reshape(-1)  # [N] (or [N, 1])
            got = ext({"id": "x", "audio": row, "sample_rate": SR})
            np.testing.assert_array_equal(b["f0"][i], got["f0"])
        assert not b["f0"][~b["example_valid"]].any()
    tone = (0.3 * np.sin(2 * np.pi * 200.0 * np.arange(SR) / SR)).astype(np.float32)
    audio = np.concatenate([np.zeros(SR // 2, np.float32), tone])[None]
    from common.data.pipeline import _Collate

    collate = _Collate(None, cfg_of(f0=ext), train=False, phoneme_vocab=None,
                       text_vocab=None)
    f0, voiced = collate._f0(audio, np.array([True]))
    assert voiced[0, 30:-2].all() and not voiced[0, :20].any()  # tone, then the padding
    np.testing.assert_allclose(f0[0, 30:-2], 200.0, rtol=0.01)
    with pytest.raises(ValueError, match=r"f0\.sample_rate must be sample_rate=16000"):
        cfg_of(f0=dataclasses.replace(ext, sample_rate=24000))


def test_precomputed_fields_ride_along(corpus):
    """Per-utterance fields are stacked; per-frame fields are left-padded so that a row's
    frames sit on the frames centred on its valid samples (the last, centred on sample
    N, empty); cropped utterances are skipped and counted; missing or misfitting fields
    are errors naming the record."""
    recs, _ = corpus
    hop = 640
    recs = [dict(r, emb=np.full(3, k, np.float32),
                 feat=np.arange(n // hop)[:, None] * np.ones(2, np.float32) + 100 * k)
            for k, (r, n) in enumerate(zip(recs, LENGTHS, strict=True))]
    cfg = cfg_of(precomputed=("emb",), precomputed_frames=("feat",), precomputed_hop=hop)
    it = iterate_eval(recs, cfg)
    seen = 0
    for b in it:
        n = b["audio"].shape[1]
        assert b["emb"].shape == (4, 3) and b["feat"].shape == (4, n // hop + 1, 2)
        centres = np.arange(n // hop + 1) * hop
        for i in range(4):
            if not b["example_valid"][i]:
                assert not b["emb"][i].any() and not b["feat"][i].any()
                continue
            k = LENGTHS.index(int(b["audio_lengths"][i]))
            seen += 1
            np.testing.assert_array_equal(b["emb"][i], k)
            on = (centres >= n - LENGTHS[k]) & (centres < n)  # the front ends' frame mask
            np.testing.assert_array_equal(b["feat"][i][on], recs[k]["feat"])
            assert not b["feat"][i][~on].any()
    assert seen == N_UTT
    # Utterances longer than max_seconds would be cropped: their frames no longer fit.
    it = iterate_eval(recs, dataclasses.replace(cfg, max_seconds=1.0, bucket_seconds=()))
    kept = sum(int(b["example_valid"].sum()) for b in it)
    assert kept == sum(n <= SR for n in LENGTHS) and it.stats.skipped["cropped"] == N_UTT - kept
    bad = [dict(r, feat=r["feat"][1:]) if k == 2 else r for k, r in enumerate(recs)]
    with pytest.raises(DataError, match=r"c/u02: precomputed field 'feat' has \d+ frames"):
        list(iterate_eval(bad, cfg))
    bad = [{k: v for k, v in r.items() if k != "emb"} if i == 3 else r
           for i, r in enumerate(recs)]
    with pytest.raises(DataError, match=r"c/u03: no precomputed field 'emb'"):
        list(iterate_eval(bad, cfg))
    with pytest.raises(ValueError, match="precomputed_hop among frame_hops"):
        cfg_of(precomputed_frames=("feat",), precomputed_hop=160)


def test_training_epochs_reshuffle(corpus):
    recs, _ = corpus
    it = make_pipeline(recs, cfg_of(num_epochs=3, batch_size=2))
    batches = list(it)
    assert len(batches) == 3 * 7
    epochs = [np.sort(np.concatenate([b["audio_lengths"] for b in batches[e * 7:(e + 1) * 7]]))
              for e in range(3)]
    for e in epochs:
        np.testing.assert_array_equal(e, sorted(LENGTHS))
    order = [[tuple(b["audio_lengths"]) for b in batches[e * 7:(e + 1) * 7]] for e in range(3)]
    assert order[0] != order[1] != order[2]


def test_long_utterances_crop_or_skip(corpus):
    recs, _ = corpus
    crop = list(iterate_eval(recs, cfg_of(max_seconds=1.0, bucket_seconds=())))
    assert {b["audio"].shape[1] for b in crop} == {16000}
    assert sum(int(b["example_valid"].sum()) for b in crop) == N_UTT
    it = iterate_eval(recs, cfg_of(max_seconds=1.0, bucket_seconds=(), long_utterances="skip"))
    kept = list(it)
    n_short = sum(n <= SR for n in LENGTHS)
    assert sum(int(b["example_valid"].sum()) for b in kept) == n_short
    assert it.stats.skipped["too_long"] == N_UTT - n_short


def test_cropped_utterances_keep_audio_but_not_their_transcript(corpus, caplog):
    """A crop of a long utterance trains reconstruction; its transcript no longer matches
    the audio, so its token row is empty (CTC leaves it out). The report says how many
    utterances and seconds each rule kept."""
    recs, _ = corpus
    pv = Vocab.from_texts(r["phonemes"] for r in recs)
    by_len = {n: k for k, n in enumerate(LENGTHS)}
    short = [n for n in LENGTHS if n <= SR]
    long = [n for n in LENGTHS if n > SR]
    cfg = cfg_of(max_seconds=1.0, bucket_seconds=(), phoneme_vocab=pv)
    with caplog.at_level(logging.INFO):
        it = make_pipeline(recs, dataclasses.replace(cfg, num_epochs=1, drop_remainder=False))
        batches = list(it)
    whole = cropped = 0
    for b in batches:
        check_masks(b)
        for row in np.flatnonzero(b["example_valid"]):
            n, valid = int(b["audio_lengths"][row]), b["phonemes_valid"][row]
            if n in by_len:  # whole: its phonemes, complete
                whole += 1
                assert pv.decode(b["phonemes"][row][valid]) == recs[by_len[n]]["phonemes"]
            else:  # cropped to max_seconds: no CTC target
                cropped += 1
                assert n == SR and not valid.any()
    assert (whole, cropped) == (len(short), len(long))
    kept = it.report.kept
    assert (kept["whole"], kept["cropped"], kept["tokens"]) == (len(short), len(long),
                                                               len(short))
    assert kept["whole_seconds"] == pytest.approx(sum(short) / SR)
    assert kept["cropped_seconds"] == pytest.approx(len(long))
    assert kept["cropped_source_seconds"] == pytest.approx(sum(long) / SR)
    assert (f"{len(short)} fit max_seconds=1 and are used whole" in caplog.text
            and f"{len(long)} are longer and are cropped to 1 s" in caplog.text)
    assert (f"epoch 0: {len(short)} utterances kept whole" in caplog.text
            and f"{len(long)} cropped" in caplog.text
            and f"{len(short)} with complete transcripts (CTC targets)" in caplog.text)
    assert json.loads(json.dumps(it.get_state()))["kept"] == dict(kept)


def test_over_long_transcripts_can_be_masked(corpus):
    recs, _ = corpus
    pv = Vocab.from_texts(r["phonemes"] for r in recs)
    it = iterate_eval(recs, cfg_of(phoneme_vocab=pv, max_tokens=30, long_tokens="mask"))
    rows = [(b, r) for b in it for r in np.flatnonzero(b["example_valid"])]
    n_long = sum(len(pv.encode(r["phonemes"])) > 30 for r in recs)
    assert 0 < n_long < N_UTT and len(rows) == N_UTT  # every utterance kept
    assert sum(not b["phonemes_valid"][r].any() for b, r in rows) == n_long
    assert it.stats.notes["long_transcript"] == n_long and not it.stats.skipped
    assert it.report.kept["tokens"] == N_UTT - n_long


def test_a_pipeline_that_keeps_nothing_says_why(corpus, tmp_path):
    recs, _ = corpus
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    junk = [make_record(id=f"j{i}", audio_path=str(tmp_path / ("junk.wav" if i % 2 else
                                                               "gone.wav")))
            for i in range(4)]
    with pytest.raises(EmptyPipelineError, match=r"every utterance of epoch 0 was skipped "
                                                  r"\(missing=2 unreadable=2\)"):
        list(iterate_eval(junk, cfg_of()))
    # Training stops before its first step (it reads ahead), not after an epoch of
    # empty batches.
    many = [dict(r, id=f"{r['id']}-{k}") for k in range(60) for r in junk]
    with pytest.raises(EmptyPipelineError, match=r"first 32 batches \(128 rows\) was "
                                                  r"skipped: missing=\d+ unreadable=\d+"):
        make_pipeline(many, cfg_of(num_epochs=None))
    # A few good utterances are enough: the batches read ahead are delivered in order.
    it = make_pipeline(recs + many, cfg_of(num_epochs=None, drop_remainder=False))
    assert it.plan.batches_per_epoch == 64
    assert sum(int(next(it)["example_valid"].sum()) for _ in range(64)) == N_UTT
    assert it.get_state()["position"] == 64
    untranscribed = [dict(r, text="") for r in recs]
    with pytest.raises(EmptyPipelineError, match=r"no_transcript=14"):
        list(iterate_eval(untranscribed, cfg_of(text_vocab=Vocab.from_texts(TEXTS))))
    too_long = cfg_of(max_seconds=0.2, bucket_seconds=(), long_utterances="skip")
    with pytest.raises(EmptyPipelineError, match=r"0 of 14 utterances are usable.*too_long=14"):
        make_pipeline(recs, too_long)
    # Cropped all, a CTC stage would learn from nothing.
    all_cropped = dataclasses.replace(too_long, long_utterances="crop",
                                      phoneme_vocab=Vocab.from_texts(r["phonemes"] for r in recs))
    with pytest.raises(EmptyPipelineError, match=r"no utterance of epoch 0 has a complete "
                                                  r"transcript.*14 cropped"):
        list(iterate_eval(recs, all_cropped))


def test_durations_from_metadata_or_probe(corpus):
    recs, _ = corpus
    np.testing.assert_allclose(source_durations(recs), np.asarray(LENGTHS) / SR, atol=1e-6)

    class WithDurations(list):
        durations = [1.0] * N_UTT

    np.testing.assert_array_equal(source_durations(WithDurations(recs)), [1.0] * N_UTT)


# --------------------------------------------------------------------------- tokens, speakers


def test_tokens_and_speakers(corpus, tmp_path):
    recs, _ = corpus
    pv = Vocab.from_texts(r["phonemes"] for r in recs)
    tv = Vocab.from_texts(r["text"] for r in recs)
    path = tv.save(tmp_path / "text_vocab.json")
    cfg = cfg_of(phoneme_vocab=pv, text_vocab=str(path), pad_multiple=8,
                 speakers=("s0", "s1", "s2"))
    by_len = {n: k for k, n in enumerate(LENGTHS)}
    for b in iterate_eval(recs, cfg):
        for field, vocab in (("phonemes", pv), ("text", tv)):
            ids, valid = b[field], b[f"{field}_valid"]
            assert ids.dtype == np.int32 and valid.dtype == bool
            assert ids.shape[1] % 8 == 0 and not ids[~valid].any()
            assert valid[:, -1][b["example_valid"]].all()  # left padded
            for row in np.flatnonzero(b["example_valid"]):
                k = by_len[int(b["audio_lengths"][row])]
                assert vocab.decode(ids[row][valid[row]]) == recs[k][field]
        assert b["speaker"].dtype == np.int32
        for row in np.flatnonzero(b["example_valid"]):
            assert b["speaker"][row] == by_len[int(b["audio_lengths"][row])] % 3

    fixed = next(iterate_eval(recs, dataclasses.replace(cfg, max_tokens=64)))
    assert fixed["text"].shape == (4, 64) and fixed["phonemes"].shape == (4, 64)
    with pytest.raises(DataError, match=r"c/u\d\d: \d+ tokens > max_tokens 12"):
        list(iterate_eval(recs, dataclasses.replace(cfg, max_tokens=12)))
    trunc = list(iterate_eval(recs, dataclasses.replace(cfg, max_tokens=12,
                                                        long_tokens="truncate")))
    assert {b["text"].shape for b in trunc} == {(4, 12)}
    # "skip": an over-long transcript drops its utterance (once, counted), the rest stay.
    n_long = sum(max(len(tv.encode(r["text"])), len(pv.encode(r["phonemes"]))) > 30
                 for r in recs)
    assert 0 < n_long < len(recs)
    it = iterate_eval(recs, dataclasses.replace(cfg, max_tokens=30, long_tokens="skip"))
    kept = list(it)
    assert {b["text"].shape for b in kept} == {(4, 30)}
    assert sum(int(b["example_valid"].sum()) for b in kept) == len(recs) - n_long
    assert dict(it.stats.skipped) == {"long_transcript": n_long}
    with pytest.raises(DataError, match="speaker 's2' is not in the speaker table"):
        list(iterate_eval(recs, dataclasses.replace(cfg, speakers=("s0", "s1"))))


def test_config_errors(corpus):
    with pytest.raises(ValueError, match="use whole-utterance mode"):
        cfg_of(segment_seconds=1.0, phoneme_vocab="v.json")
    with pytest.raises(ValueError, match="bucket_seconds"):
        cfg_of(bucket_seconds=(2.0, 1.0))
    with pytest.raises(ValueError, match="long_utterances"):
        cfg_of(long_utterances="drop")
    with pytest.raises(ValueError, match="max_tokens must be set"):
        make_pipeline(corpus[0], cfg_of(text_vocab=Vocab("ab"), process_count=2))
    with pytest.raises(ValueError, match="multiple of the process count"):
        make_pipeline(corpus[0], cfg_of(batch_size=3, process_count=2))


# --------------------------------------------------------------------------- bad input


def test_skipped_files_are_counted_in_the_main_process(corpus, tmp_path):
    recs, _ = corpus
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), SR)
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    sf.write(tmp_path / "st8k.wav", 0.1 * np.ones((8000, 2), np.float32), 8000)
    bad = [make_record(id="x/missing", audio_path=str(tmp_path / "missing.wav"), duration=1.0),
           make_record(id="x/silent", audio_path=str(tmp_path / "silent.wav")),
           make_record(id="x/junk", audio_path=str(tmp_path / "junk.wav"))]
    fixable = make_record(id="x/st8k", audio_path=str(tmp_path / "st8k.wav"))
    source = recs[:5] + bad + [fixable]
    it = iterate_eval(source, cfg_of(batch_size=3))
    batches = list(it)
    assert len(batches) == 3 and all(b["audio"].shape[0] == 3 for b in batches)
    assert sum(int(b["example_valid"].sum()) for b in batches) == 6
    assert dict(it.stats.skipped) == {"missing": 1, "silent": 1, "unreadable": 1}
    assert it.stats.notes["downmixed"] == 1 and it.stats.notes["resampled"] == 1
    for b in batches:
        assert not b["audio_valid"][~b["example_valid"]].any()
    with pytest.raises(BadInputError, match=r"(junk|silent|missing).wav: "):
        list(iterate_eval(source, cfg_of(batch_size=3, bad_input=BadInputConfig(mode="strict"))))


def test_empty_transcript_is_skipped_once(corpus):
    recs, _ = corpus
    source = [dict(r) for r in recs[:4]]
    source[1].update(text="", phonemes="")
    cfg = cfg_of(text_vocab=Vocab.from_texts(TEXTS), phoneme_vocab=Vocab.from_texts(["hɛloʊ"]))
    it = iterate_eval(source, cfg)
    (batch,) = list(it)
    assert batch["example_valid"].sum() == 3 and dict(it.stats.skipped) == {"no_transcript": 1}
    with pytest.raises(BadInputError, match="no_transcript"):
        list(iterate_eval(source, dataclasses.replace(cfg, bad_input=BadInputConfig("strict"))))


# --------------------------------------------------------------------------- sharding


def test_process_shards_are_disjoint_and_cover(corpus):
    recs, _ = corpus
    per_proc = [list(iterate_eval(recs, cfg_of(batch_size=4, process_index=p, process_count=2)))
                for p in range(2)]
    assert len(per_proc[0]) == len(per_proc[1]) == 4
    seen = []
    for b0, b1 in zip(*per_proc, strict=True):
        assert b0["audio"].shape == b1["audio"].shape and b0["audio"].shape[0] == 2
        for b in (b0, b1):
            seen += b["audio_lengths"][b["example_valid"]].tolist()
    assert sorted(seen) == sorted(LENGTHS)
    train = [take(make_pipeline(recs, cfg_of(num_epochs=None, process_index=p,
                                             process_count=2)), 5) for p in range(2)]
    for b0, b1 in zip(*train, strict=True):
        assert b0["audio"].shape == b1["audio"].shape
        assert not set(b0["audio_lengths"]) & set(b1["audio_lengths"])


# --------------------------------------------------------------------------- resume


def _resume_roundtrip(recs, cfg, k=3, m=4):
    it = make_pipeline(recs, cfg)
    take(it, k)
    state = json.loads(json.dumps(it.get_state()))
    expected = take(it, m)
    fresh = make_pipeline(recs, cfg)
    fresh.set_state(state)
    got = take(fresh, m)
    it.close()
    fresh.close()
    assert_batches_equal(expected, got)
    return state


def test_resume_is_exact(corpus, tmp_path):
    recs, _ = corpus
    seg = cfg_of(segment_seconds=0.5, num_epochs=None, loudness_dbfs=-20.0, gain_db=(-6.0, 6.0),
                 batch_size=2, read_threads=2)
    state = _resume_roundtrip(recs, seg, k=9)  # crosses an epoch boundary (7 per epoch)
    assert state["position"] == 9
    _resume_roundtrip(recs, cfg_of(num_epochs=None, speakers=("s0", "s1", "s2"),
                                   text_vocab=Vocab.from_texts(TEXTS)))
    other = make_pipeline(recs, dataclasses.replace(seg, seed=5))
    with pytest.raises(ValueError, match="another batch plan"):
        other.set_state(state)


@pytest.mark.slow
def test_resume_with_workers(corpus):
    """Worker processes give the batches of the in-process pipeline, and the state moves
    between worker counts both ways (one worker pool: each start imports jax, seconds)."""
    recs, _ = corpus
    cfg = cfg_of(segment_seconds=0.5, num_epochs=None, gain_db=(-6.0, 6.0),
                 loudness_dbfs=-20.0, worker_count=2)
    ref_cfg = dataclasses.replace(cfg, worker_count=0)
    ref = make_pipeline(recs, ref_cfg)
    take(ref, 4)
    state = json.loads(json.dumps(ref.get_state()))
    expected = take(ref, 6)
    with make_pipeline(recs, cfg) as workers:
        workers.set_state(state)
        assert_batches_equal(expected[:3], take(workers, 3))
        state = json.loads(json.dumps(workers.get_state()))
    assert state["position"] == 7 and flags.FLAGS.is_parsed()
    fresh = make_pipeline(recs, ref_cfg)
    fresh.set_state(state)
    assert_batches_equal(expected[3:], take(fresh, 3))


def test_state_goes_through_checkpointer(corpus, tmp_path):
    from common.train.checkpoint import CheckpointConfig, Checkpointer

    recs, _ = corpus
    cfg = cfg_of(segment_seconds=0.5, num_epochs=None)
    it = make_pipeline(recs, cfg)
    take(it, 2)
    ckpt = Checkpointer(tmp_path / "run", CheckpointConfig(keep_best=0, async_save=False))
    ckpt.save(2, {"train": {"x": np.zeros(2, np.float32)}}, data_iterator=it)
    ckpt.wait()
    expected = take(it, 3)
    fresh = make_pipeline(recs, cfg)
    step, _ = ckpt.restore({"train": {"x": np.zeros(2, np.float32)}}, data_iterator=fresh)
    ckpt.close()
    assert step == 2
    assert_batches_equal(expected, take(fresh, 3))


# --------------------------------------------------------------------------- transforms, utils


def test_loudness_crop_and_tokenize():
    rng = np.random.default_rng(0)
    wav = (0.01 * rng.standard_normal(16000)).astype(np.float32)
    out = normalize_loudness(wav, -20.0, peak_dbfs=-1.0)
    assert out.dtype == np.float32 and abs(rms_dbfs(out) + 20.0) < 1e-3
    spiky = wav.copy()
    spiky[100] = 0.9
    limited = normalize_loudness(spiky, -10.0, peak_dbfs=-6.0)
    assert abs(20 * np.log10(np.abs(limited).max()) + 6.0) < 1e-3 and rms_dbfs(limited) < -10
    assert abs(rms_dbfs(normalize_loudness(wav, -20.0, gain_db=3.0)) + 17.0) < 1e-3
    silence = np.zeros(10, np.float32)
    np.testing.assert_array_equal(normalize_loudness(silence, -20.0), silence)

    crop = random_crop(wav, 100, np.random.default_rng(1))
    start = int(np.flatnonzero(wav == crop[0])[0])
    np.testing.assert_array_equal(wav[start:start + 100], crop)
    np.testing.assert_array_equal(random_crop(wav, 100, None), wav[:100])
    assert random_crop(wav[:50], 100, None).shape == (50,)

    v = Vocab.from_texts(["abc"])
    np.testing.assert_array_equal(tokenize("cab", v), v.encode("cab"))
    cut = tokenize("abcabc", v, max_len=4, on_long="truncate", bos_eos=True)
    assert cut.shape == (4,) and cut[-1] == EOS
    with pytest.raises(DataError, match="utt7: 6 tokens"):
        tokenize("abcabc", v, max_len=4, where="utt7")


def test_grain_utils():
    grain_utils.ensure_absl_flags_parsed()
    grain_utils.ensure_absl_flags_parsed()
    assert flags.FLAGS.is_parsed()
    assert grain_utils.process_shard() == (0, 1)
    assert grain_utils.process_shard(1, 4) == (1, 4)
    with pytest.raises(ValueError, match="process_index must be"):
        grain_utils.process_shard(4, 4)
    assert grain_utils.local_batch_size(8, 4) == 2
    with pytest.raises(ValueError, match="multiple of the process count"):
        grain_utils.local_batch_size(6, 4)
