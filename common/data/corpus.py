"""The embedded speech corpus: espeak-ng voices reading the shipped sentences.

``build_corpus(CorpusConfig(out=..., hours=..., sample_rate=...))`` writes an HF
audio-folder dataset (``datasets.load_dataset("audiofolder", data_dir=out)`` loads it)::

    out/train/metadata.jsonl          one row per utterance: file_name (relative to the
    out/train/00000/00000-0000.flac   split folder), id, text, phonemes (espeak IPA),
    out/validation/...                speaker (Voice.id), language, duration (s), unseen
    out/test/...                      (held-out speaker or language: test split only)
    out/corpus.json                   config, counts and hours per split, speed
    out/speakers.json                 speaker id -> voice settings, language, unseen
    out/phoneme_vocab.json            common.data.vocab.Vocab of every phoneme symbol
    out/text_vocab.json               ... and of every text character

Determinism: the parent plans everything from the seed alone (speakers, and for
utterance ``i`` its speaker, sentences and split from ``default_rng([seed, 3, i])``), cuts
the plan into shards of ``shard_utterances()`` and synthesises each shard in order in
a fresh ``common.data.corpus_worker`` process (espeak's output depends on the process's
call history). The build stops after the first shard, in plan order, where the total
duration reaches ``hours``. So the files are bit-identical whatever ``workers`` is. The
build goes to a hidden sibling directory renamed into place at the end: an interrupted
build never looks complete.

CLI: ``python -m common.data.build_corpus --out DIR --hours H --sample-rate SR [--languages ...]
[--num-speakers N] [--seed S] [--workers W] [--holdout-speakers K]
[--holdout-languages ...]``. Training entry points call ``default_corpus()``, which
builds a small corpus into the cache directory once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.data.corpus_worker import run_shards
from common.data.records import DataError, make_record
from common.data.sentences import load_sentences, sentence_languages
from common.data.speakers import Speaker, plan_speakers
from common.data.vocab import Vocab

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
DEFAULT_LANGUAGES = ("en-us", "en-gb-x-rp", "de", "fr", "es", "it", "pt", "nl")
ENGLISH_WEIGHT = 3.0  # default weight of "en*" voices; every other language weighs 1
_UTTERANCE_STREAM = 3
_ESPEAK_STREAM = 4
_PRIOR_SECONDS_PER_SENTENCE = 2.5  # for sizing shards; measured ~2.7 s (espeak-ng 1.52)


class CorpusError(RuntimeError):
    """A corpus cannot be planned: no language with sentences, or nothing left to train."""


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """What to generate. Every field but ``out`` and ``workers`` changes the output.

    Attributes:
      out: output directory (must not exist, or be empty).
      hours: target total duration; the build stops after the shard that reaches it.
      sample_rate: Hz of the written audio (espeak speaks at 22050; soxr resamples).
      languages: espeak language voices; a voice is skipped at build time when its
        family (en-gb-x-rp -> en) has no sentence file in common/data/sentences.
      language_weights: one per language, the share of utterances; () gives English
        voices weight 3 and the others 1.
      num_speakers: distinct synthetic speakers (voice variant x rate x pitch x range).
      seed: everything random derives from it.
      valid_fraction: share of seen utterances in the validation split.
      test_fraction: share of seen utterances in the test split.
      holdout_speakers: speakers (outside holdout_languages) used only in test (unseen).
      holdout_languages: languages whose speakers are used only in test (unseen).
      workers: parallel shard processes; 0 = os.cpu_count(). Does not change the output.
      shard_size: utterances per shard (one fresh process each); 0 = about an eighth of
        the target, 16..128 utterances, so small corpora still use several workers and
        overshoot ``hours`` by little (the build stops at a shard boundary).
      max_sentences: an utterance joins 1..max_sentences sentences (length variety).
    """

    out: pathlib.Path | None = None
    hours: float = 1.0
    sample_rate: int = 24_000
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    language_weights: tuple[float, ...] = ()
    num_speakers: int = 64
    seed: int = 0
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    holdout_speakers: int = 0
    holdout_languages: tuple[str, ...] = ()
    workers: int = 0
    shard_size: int = 0
    max_sentences: int = 2

    def __post_init__(self):
        def bad(field: str, why: str):
            raise ValueError(f"CorpusConfig.{field}: {why}, got {getattr(self, field)!r}")

        if not self.hours > 0:
            bad("hours", "must be > 0")
        if self.sample_rate <= 0:
            bad("sample_rate", "must be a positive number of Hz (e.g. 16000, 24000, 48000)")
        if not self.languages or len(set(self.languages)) != len(self.languages):
            bad("languages", "must be a non-empty list of distinct espeak voice names")
        if self.language_weights and (len(self.language_weights) != len(self.languages)
                                      or min(self.language_weights) <= 0):
            bad("language_weights", f"must be () or {len(self.languages)} positive numbers, "
                "one per language")
        if self.num_speakers < 1:
            bad("num_speakers", "must be >= 1")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                bad(name, "must be in [0, 1)")
        if self.valid_fraction + self.test_fraction >= 1.0:
            bad("test_fraction", "valid_fraction + test_fraction must be < 1")
        if not 0 <= self.holdout_speakers < self.num_speakers:
            bad("holdout_speakers", f"must be in [0, num_speakers={self.num_speakers})")
        if not set(self.holdout_languages) <= set(self.languages):
            bad("holdout_languages", f"must be among languages {list(self.languages)}")
        if self.workers < 0:
            bad("workers", "must be >= 0 (0: one per CPU)")
        if self.shard_size < 0:
            bad("shard_size", "must be >= 0 (0: chosen from hours)")
        if self.max_sentences < 1:
            bad("max_sentences", "must be >= 1")

    def shard_utterances(self) -> int:
        """``shard_size``, or the automatic size for ``shard_size=0``."""
        if self.shard_size:
            return self.shard_size
        expected = self.hours * 3600.0 / self.expected_utterance_seconds()
        return int(np.clip(round(expected / 8), 16, 128))

    def expected_utterance_seconds(self) -> float:
        """A rough prior (espeak at its default rate reads a shipped sentence in ~2.5 s)."""
        return (1 + self.max_sentences) / 2 * _PRIOR_SECONDS_PER_SENTENCE

    def weights(self) -> tuple[float, ...]:
        """``language_weights``, or the English-heavy default."""
        return self.language_weights or tuple(
            ENGLISH_WEIGHT if lang.split("-")[0] == "en" else 1.0 for lang in self.languages)


PRESETS = {
    "default": CorpusConfig(),
    "tiny": CorpusConfig(hours=0.02, sample_rate=16_000, num_speakers=8,
                         valid_fraction=0.1, test_fraction=0.1),
}


def family(language: str) -> str:
    """The sentence-file family of an espeak voice name: ``"en-gb-x-rp"`` -> ``"en"``."""
    return language.split("-")[0]


# --------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the utterance plan depends on besides the config's seed and sizes."""

    languages: tuple[str, ...]  # active: the config's languages that have sentences
    weights: tuple[float, ...]
    speakers: tuple[Speaker, ...]
    sentences: dict[str, tuple[str, ...]]  # family -> shipped sentences

    def by_language(self) -> dict[str, list[Speaker]]:
        out: dict[str, list[Speaker]] = {}
        for s in self.speakers:
            out.setdefault(s.voice.language, []).append(s)
        return out


def make_plan(cfg: CorpusConfig) -> Plan:
    """Restrict ``cfg.languages`` to those with sentences and draw the speakers."""
    have = set(sentence_languages())
    active = [(lang, w) for lang, w in zip(cfg.languages, cfg.weights(), strict=True)
              if family(lang) in have]
    if not active:
        raise CorpusError(f"CorpusConfig.languages {list(cfg.languages)}: no sentence file "
                          f"for any of them; common/data/sentences has {sorted(have)}")
    dropped = [lang for lang in cfg.languages if family(lang) not in have]
    if dropped:
        log.info("corpus: no sentences for %s, using %s", dropped, [a for a, _ in active])
    languages, weights = zip(*active, strict=True)
    held = [lang for lang in cfg.holdout_languages if lang in languages]
    if held and len(held) == len(languages):
        raise CorpusError(f"CorpusConfig.holdout_languages {held} holds out every language "
                          "that has sentences; nothing would be left for training")
    speakers = plan_speakers(languages, weights, cfg.num_speakers, cfg.seed,
                             holdout_speakers=cfg.holdout_speakers, holdout_languages=held)
    sentences = {family(lang): load_sentences(family(lang)) for lang in languages}
    return Plan(tuple(languages), tuple(weights), speakers, sentences)


def plan_utterances(cfg: CorpusConfig, plan: Plan, start: int, stop: int) -> list[dict]:
    """Utterances ``start..stop-1``: id, split, file_name, text, voice, unseen.

    Each utterance is drawn from its own stream ``[seed, 3, index]``: first the
    split draw, then the language by weight (among languages with speakers), a speaker of
    that language and 1..max_sentences distinct sentences; unseen speakers go to test.
    """
    groups = plan.by_language()
    langs = [lang for lang in plan.languages if lang in groups]
    p = np.asarray([w for lang, w in zip(plan.languages, plan.weights, strict=True)
                    if lang in groups])
    p = p / p.sum()
    size = cfg.shard_utterances()
    out = []
    for index in range(start, stop):
        rng = np.random.default_rng([cfg.seed, _UTTERANCE_STREAM, index])
        u = rng.random()  # first, so seen utterances' splits do not move with the sentences
        speakers = groups[langs[int(rng.choice(len(langs), p=p))]]
        speaker = speakers[int(rng.integers(len(speakers)))]
        pool = plan.sentences[family(speaker.voice.language)]
        k = min(int(rng.integers(1, cfg.max_sentences + 1)), len(pool))
        text = " ".join(pool[int(j)] for j in rng.choice(len(pool), size=k, replace=False))
        if speaker.unseen or u >= 1.0 - cfg.test_fraction:
            split = "test"
        elif u < cfg.valid_fraction:
            split = "validation"
        else:
            split = "train"
        shard, i = divmod(index, size)
        uid = f"{shard:05d}-{i:04d}"
        out.append({"id": uid, "split": split, "file_name": f"{shard:05d}/{uid}.flac",
                    "text": text, "voice": dataclasses.asdict(speaker.voice),
                    "unseen": speaker.unseen})
    return out


def shard_spec(cfg: CorpusConfig, plan: Plan, shard: int, root: pathlib.Path) -> dict:
    """The JSON spec ``corpus_worker`` synthesises for ``shard``."""
    seed = np.random.SeedSequence([cfg.seed, _ESPEAK_STREAM, shard]).generate_state(1)[0]
    size = cfg.shard_utterances()
    start = shard * size
    return {"shard": shard, "espeak_seed": int(seed), "sample_rate": cfg.sample_rate,
            "root": str(root),
            "utterances": plan_utterances(cfg, plan, start, start + size)}


# --------------------------------------------------------------------------- building


def _write_jsonl(path: pathlib.Path, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_outputs(cfg: CorpusConfig, plan: Plan, root: pathlib.Path, shards: list[dict],
                   wall: float) -> dict:
    """Metadata per split, speakers, vocabularies and ``corpus.json`` (returned)."""
    # Imported here (and below): tyro and yaml are not needed to read a corpus.
    from common.config import config_to_dict

    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for result in shards:
        for row in result["rows"]:
            by_split[row.pop("split")].append(row)
    rows = [r for s in SPLITS for r in by_split[s]]
    for split, split_rows in by_split.items():
        if split_rows:  # audiofolder rejects a split folder without audio
            _write_jsonl(root / split / "metadata.jsonl", split_rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["speaker"]] = counts.get(r["speaker"], 0) + 1
    speakers = {s.id: {**s.to_json(), "utterances": counts.get(s.id, 0)} for s in plan.speakers}
    (root / "speakers.json").write_text(json.dumps(speakers, indent=1) + "\n")
    Vocab.from_texts(r["phonemes"] for r in rows).save(root / "phoneme_vocab.json")
    Vocab.from_texts(r["text"] for r in rows).save(root / "text_vocab.json")
    seconds = sum(r["duration"] for r in rows)
    summary = {
        "format_version": FORMAT_VERSION,
        "config": {**config_to_dict(cfg), "out": None},
        "splits": {s: {"utterances": len(v), "hours": sum(r["duration"] for r in v) / 3600,
                       "unseen": sum(r["unseen"] for r in v)} for s, v in by_split.items()},
        "utterances": len(rows),
        "hours": seconds / 3600,
        "shards": len(shards),
        "skipped": sum(len(r["skipped"]) for r in shards),
        "speakers": len({r["speaker"] for r in rows}),
        "languages": sorted({r["language"] for r in rows}),
        "workers": cfg.workers or os.cpu_count() or 1,
        "wall_seconds": wall,
        "speed": seconds / wall if wall > 0 else 0.0,  # seconds of audio per second
        "versions": _versions(),
    }
    (root / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"espeakng-loader": version("espeakng-loader"), "numpy": np.__version__,
            "sentences": sentences_digest()}


def sentences_digest() -> str:
    """Short sha256 of every shipped sentence list (a cached corpus goes stale with them)."""
    h = hashlib.sha256()
    for fam in sentence_languages():
        h.update(f"{fam}\0{chr(10).join(load_sentences(fam))}\0".encode())
    return h.hexdigest()[:12]


def build_corpus(cfg: CorpusConfig, *, progress: bool = False) -> dict:
    """Generate the corpus into ``cfg.out``; returns the ``corpus.json`` summary.

    Raises ``FileExistsError`` if ``cfg.out`` exists and is not empty, ``CorpusError``
    if the config cannot be planned, ``ShardError`` if a worker fails (nothing is left
    behind then). ``progress`` shows a tqdm bar in seconds of audio.
    """
    if cfg.out is None:
        raise ValueError("CorpusConfig.out: an output directory is required (--out DIR)")
    out = pathlib.Path(cfg.out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; remove it or choose "
                              "another --out")
    plan = make_plan(cfg)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        shards = run_shards(
            lambda shard: shard_spec(cfg, plan, shard, tmp), tmp, cfg.hours * 3600.0,
            workers=cfg.workers or os.cpu_count() or 1, progress=progress,
            estimate=cfg.shard_utterances() * cfg.expected_utterance_seconds())
        summary = _write_outputs(cfg, plan, tmp, shards, time.perf_counter() - start)
        os.replace(tmp, out)  # an empty ``out`` is replaced; a non-empty one fails here
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


# ---------------------------------------------------------------------------- reading


def corpus_records(root: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """The rows of ``root/split/metadata.jsonl`` as records (``common.data.records``):
    absolute ``audio_path``, plus ``unseen`` (bool). An empty split gives ``[]``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = pathlib.Path(root).absolute() / split
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        if (folder.parent / "corpus.json").is_file():
            return []
        raise DataError(f"{folder.parent}: not an espeak corpus (no corpus.json)")
    out = []
    with open(meta, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{meta}:{lineno}"
            try:
                row = json.loads(line)
                fields = {k: row[k] for k in ("id", "text", "phonemes", "speaker", "language",
                                              "duration")}
                path = str(folder / row["file_name"])
                unseen = bool(row["unseen"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{where}: bad metadata row ({e!r})") from e
            out.append(make_record(where=where, audio_path=path, unseen=unseen, **fields))
    return out


# ------------------------------------------------------------------------ the cache


def cache_dir() -> pathlib.Path:
    """``$TRC_CACHE_DIR`` or ``~/.cache/trc``."""
    return pathlib.Path(os.environ.get("TRC_CACHE_DIR") or pathlib.Path.home() / ".cache/trc")


def corpus_key(cfg: CorpusConfig) -> str:
    """A directory name that changes with anything that changes the corpus's content."""
    from common.config import config_to_dict

    content = dataclasses.replace(cfg, out=None, workers=0)
    blob = json.dumps({"config": config_to_dict(content), "format": FORMAT_VERSION,
                       "versions": _versions()}, sort_keys=True)
    return f"espeak-{cfg.sample_rate}hz-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def default_corpus(sample_rate: int = 24_000, hours: float = 0.25, **overrides: Any
                   ) -> pathlib.Path:
    """A corpus in the cache directory, built on first use; its path.

    ``overrides`` are other ``CorpusConfig`` fields. A file lock keeps two processes on
    one host from building the same corpus twice: the second waits and reuses it.
    """
    cfg = CorpusConfig(sample_rate=sample_rate, hours=hours, **overrides)
    parent = cache_dir() / "corpus"
    path = parent / corpus_key(cfg)
    if (path / "corpus.json").is_file():
        return path
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "corpus.json").is_file():  # another process built it while we waited
            return path
        for stale in parent.glob(f".{path.name}.building-*"):  # a killed build's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        if path.exists():
            shutil.rmtree(path)
        log.info("building the embedded espeak corpus (%.2f h at %d Hz) into %s; later "
                 "runs reuse it", hours, sample_rate, path)
        summary = build_corpus(dataclasses.replace(cfg, out=path), progress=True)
        log.info("corpus ready: %s", summary_line(summary, path))
    return path


def summary_line(summary: dict, out: str | os.PathLike) -> str:
    splits = " / ".join(f"{s} {v['utterances']}" for s, v in summary["splits"].items())
    return (f"{out}: {summary['hours']:.3f} h, {summary['utterances']} utterances ({splits}), "
            f"{summary['speakers']} speakers, {len(summary['languages'])} languages "
            f"({', '.join(summary['languages'])}), {summary['wall_seconds']:.1f} s wall, "
            f"{summary['speed']:.0f} audio s per wall s ({summary['workers']} workers)")
