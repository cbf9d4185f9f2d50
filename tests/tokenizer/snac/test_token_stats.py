"""SNAC token statistics against hand-computed cases (numpy only; the CLI test reads
token files written with ``SnacTokenFile.save``, no model)."""

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from tokenizer.snac.token_stats import (
    _num,
    analyze,
    bpe,
    flatten_frames,
    frame_order,
    gini,
    recommendation,
    stream_stats,
)


def _naive_bpe(seqs, vocab, num, min_count=2):
    """Full recount per merge, greedy left to right: the definition ``bpe`` must match."""
    seqs, merges = [list(map(int, s)) for s in seqs], []
    for k in range(num):
        c = Counter(p for s in seqs for p in itertools.pairwise(s))
        if not c or max(c.values()) < min_count:
            break
        best = max(c.values())
        pair, new, done, out = min(p for p, v in c.items() if v == best), vocab + k, 0, []
        for s in seqs:
            o, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == pair:
                    o.append(new)
                    i, done = i + 2, done + 1
                else:
                    o.append(s[i])
                    i += 1
            out.append(o)
        seqs = out
        merges.append((*pair, new, done))
    return merges, sum(map(len, seqs))


def test_uniform_codes():
    s = stream_stats([np.tile(np.arange(8), 10)], 8)
    assert s.gini == pytest.approx(0.0, abs=1e-12)
    assert s.perplexity == pytest.approx(8.0)
    assert s.entropy_bits == pytest.approx(3.0)
    assert (s.used, s.usage, s.tokens) == (8, 1.0, 80)
    assert [t[2] for t in s.top] == pytest.approx([1 / 8] * 8)


def test_single_repeated_code():
    s = stream_stats([np.full(20, 3), np.full(10, 3)], 8)
    assert s.gini == pytest.approx(7 / 8)
    assert s.perplexity == pytest.approx(1.0)
    assert s.top == [(3, 30, 1.0)]
    assert s.repeat_share == 1.0
    assert s.mean_run == 15.0  # two runs, one per file: never joined across the boundary
    assert s.longest_run == 20
    assert s.bigrams == 28 and s.distinct_bigrams == 1


def test_gini_by_hand():
    # sorted [0, 0, 1, 3], weights 2i - n - 1 = -3, -1, 1, 3: (1 + 9) / (4 * 4)
    assert gini(np.array([3, 0, 1, 0])) == pytest.approx(10 / 16)


def test_cycle_is_deterministic():
    s = stream_stats([np.tile([0, 1, 2, 3], 25)], 16)
    assert s.cond_entropy_bits == pytest.approx(0.0, abs=1e-12)
    assert s.mutual_info_bits == pytest.approx(s.bigram_entropy_bits)
    assert s.transition_sparsity == pytest.approx(4 / 16)
    assert s.successors_mean == 1.0 and s.successors_median == 1.0
    assert s.repeat_share == 0.0 and s.mean_run == 1.0 and s.usage == 4 / 16


def test_bpe_abab():
    r = bpe([[0, 1] * 4], 2, 1000)
    assert r.merges == [(0, 1, 2, 4), (2, 2, 3, 2)]  # abababab -> cccc -> dd, then count 1
    assert r.lengths.tolist() == [8, 4, 2]
    assert (r.ratio(1), r.ratio(2), r.ratio(1000)) == (2.0, 4.0, 4.0)


def test_bpe_overlapping_run_merges_left_to_right():
    r = bpe([[0] * 5], 1, 10)
    assert r.merges == [(0, 0, 1, 2)] and r.lengths.tolist() == [5, 3]  # aaaaa -> b b a


def test_bpe_never_merges_across_files():
    # Joined, "0 1 0 1 0 1" would merge (0, 1) three times; inside files only (1, 0) twice.
    r = bpe([[0], [1, 0], [1, 0], [1]], 2, 10)
    assert r.merges == [(1, 0, 2, 2)] and r.lengths.tolist() == [6, 4]


def test_bpe_matches_full_recount(rng):
    for _ in range(200):
        vocab = int(rng.integers(1, 5))
        seqs = [rng.integers(0, vocab, int(rng.integers(0, 30)))
                for _ in range(int(rng.integers(1, 4)))]
        r = bpe(seqs, vocab, 20)
        merges, after = _naive_bpe(seqs, vocab, 20)
        assert r.merges == merges
        assert r.lengths[-1] == after


def test_flatten_421():
    codes = [np.array([0, 1]), np.arange(10, 14), np.arange(20, 28)]
    assert flatten_frames(codes, (4, 2, 1)).tolist() == [
        0, 10, 20, 21, 11, 22, 23, 1, 12, 24, 25, 13, 26, 27]
    shifted = flatten_frames(codes, (4, 2, 1), codebook_size=100).tolist()
    assert shifted[:7] == [0, 110, 220, 221, 111, 222, 223]


def test_flatten_8421():
    codes = [np.array([0]), np.array([10, 11]), np.arange(20, 24), np.arange(30, 38)]
    assert flatten_frames(codes, (8, 4, 2, 1)).tolist() == [
        0, 10, 20, 30, 31, 21, 32, 33, 11, 22, 34, 35, 23, 36, 37]
    assert frame_order((8, 4, 2, 1))[:4] == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_flatten_drops_partial_frame_and_checks_strides():
    codes = [np.array([0, 1]), np.array([10, 11, 12]), np.arange(20, 26)]
    assert flatten_frames(codes, (4, 2, 1)).tolist() == [0, 10, 20, 21, 11, 22, 23]
    with pytest.raises(ValueError, match="strides"):
        frame_order((4, 3, 1))


def _files(rng, n=6, frames=30, k=64):
    return [[rng.integers(0, k, frames * m) for m in (1, 2, 4)] for _ in range(n)]


def test_report_json_and_table(rng):
    report = analyze(_files(rng), (4, 2, 1), 64, merges=50, checkpoints=(10, 50))
    d = json.loads(json.dumps(report.to_dict(counts=True)))
    assert [s["name"] for s in d["streams"]] == ["L0 /4", "L1 /2", "L2 /1", "flat"]
    assert d["frames"] == 6 * 30 and d["streams"][-1]["tokens"] == 6 * 30 * 7
    assert d["streams"][-1]["vocab_size"] == 3 * 64
    assert len(d["streams"][0]["counts"]) == 64
    assert set(d["streams"][0]["bpe"]["ratio"]) == {"10", "50"}
    table = report.format_table()
    lines = table.split("\n\n")[0].splitlines()
    assert len(lines) == 2 + 4 and lines[0].startswith("stream")
    for column in ("ppl", "gini", "H(n|c)", "MI", "sparsity", "bpe@N"):  # explained
        assert f"\n  {column} " in table
    assert d["recommendation"] == recommendation(report)


def test_no_negative_zero_in_the_table():
    """A statistic that rounds to zero prints as 0, never "-0.00" (e.g. the mutual
    information of independent codes, which the plug-in estimate can put a hair below
    zero)."""
    assert _num(-1e-9, ".2f") == "0.00" and _num(-4e-5, ".1%") == "0.0%"
    assert _num(-0.0, ".2e") == "0.00e+00" and _num(-1e-20, ".2e") == "-1.00e-20"
    assert _num(-0.5, ".2f") == "-0.50" and _num(0.0, ".0f") == "0"
    report = analyze([[np.zeros(40, int), np.zeros(80, int)]], (2, 1), 16, merges=10)
    assert "-0." not in report.format_table()


def test_a_collapsed_codec_is_flagged_not_advised_on():
    """One code of 4096 on every frame: the finding is the collapse, not BPE."""
    files = [[np.zeros(100, int), np.zeros(200, int)] for _ in range(3)]
    text = recommendation(analyze(files, (2, 1), 4096, merges=20))
    assert text.startswith("- COLLAPSED: L0 /2 (1 of 4096 codes, perplexity 1.00), "
                           "L1 /1 (1 of 4096 codes")
    assert "BPE is worth" not in text and "\n" not in text


def test_recommendation_flags_dead_codes_and_repetition():
    # 2 of 16 codes, each in long runs: dead codes, low perplexity, high repetition.
    files = [[np.repeat([0, 1], 100), np.repeat([0, 1], 200)] for _ in range(3)]
    text = recommendation(analyze(files, (2, 1), 16, merges=20))
    assert "never used" in text and "repeat the previous code" in text
    assert "BPE is worth trying" in text


# Slow only by its imports: SnacTokenFile's module pulls in flax, orbax and scipy.signal
# (~6 s in a fresh process); the run itself takes milliseconds.
@pytest.mark.slow
def test_cli_on_token_files(tmp_path, rng, capsys):
    inference = pytest.importorskip("tokenizer.snac.inference")
    from tokenizer.snac import tokens

    for i, codes in enumerate(_files(rng, n=3)):
        inference.SnacTokenFile(codes=codes, strides=(4, 2, 1), codebook_size=64,
                                sample_rate=24000, num_samples=30 * 2048, config_hash="x",
                                step=0, source=f"f{i}").save(tmp_path / "sub" / f"f{i}.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    out = tmp_path / "report.json"
    tokens.main([str(tmp_path), "--merges", "20", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable" in printed and "flat" in printed
    d = json.loads(out.read_text())
    assert d["files"] == 3 and len(d["skipped"]) == 1 and d["run_dir"] is None
    assert set(d["streams"][-1]["bpe"]["ratio"]) == {"20"}


def test_recommendation_predictability_needs_enough_bigrams(rng):
    cycle = [[np.tile(np.arange(8), 50), np.tile(np.arange(16), 50)]]
    assert "largely predictable" in recommendation(analyze(cycle, (2, 1), 16, merges=0))
    # Random codes: the plug-in H(next|current) is low only through the small sample.
    noise = [[rng.integers(0, 256, 200), rng.integers(0, 256, 400)]]
    assert "predictable" not in recommendation(analyze(noise, (2, 1), 256, merges=0))
