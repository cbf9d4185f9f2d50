"""Shards of the espeak-ng corpus, each synthesised in a fresh process.

Both ends of one protocol: ``run_shards`` (in the parent, ``common.data.corpus``) starts
``python -m common.data.corpus_worker`` once per shard, a few at a time from a thread
pool, and ``main`` (in that process) synthesises the shard. One fresh process per shard,
because espeak's output depends on the calls the process made before (see
``common.data.espeak``): a fresh process that reseeds espeak and makes the shard's calls
in plan order writes the same bytes whichever worker runs it, and whenever. Processes
are started with ``subprocess`` rather than multiprocessing's spawn, which would re-import
the parent's ``__main__`` (a training entry point imports jax: seconds per shard).

Protocol: a JSON shard spec on stdin::

    {"shard": 3, "espeak_seed": 123, "sample_rate": 24000, "root": "/abs/build/dir",
     "utterances": [{"id": "00003-0000", "split": "train", "file_name": "00003/...flac",
                     "text": "...", "voice": {"language": "de", "variant": "m3",
                     "rate": 170, "pitch": 40, "range": 55}, "unseen": false}, ...]}

and a JSON result on stdout: ``{"shard", "rows": [metadata row + "split"], "skipped":
[{"id", "reason"}], "seconds"}``. Each row's audio is written as 16-bit FLAC to
``root/<split>/<file_name>``.

This module must stay light: the worker imports numpy, soundfile, soxr and espeak only
(no jax), since every shard pays its start-up time.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from common.data import espeak

log = logging.getLogger(__name__)

TRIM_DB = -50.0  # below this, relative to the utterance's peak, counts as silence
KEEP_SILENCE = 0.1  # seconds of silence kept at each end after trimming
MIN_PEAK = 1e-3  # quieter than this (-60 dBFS) is no speech at all


def trim_silence(wav: np.ndarray, sample_rate: int, keep: float = KEEP_SILENCE,
                 threshold_db: float = TRIM_DB) -> np.ndarray:
    """``wav`` float32 ``[N]`` without leading/trailing silence beyond ``keep`` seconds.

    Silence is any sample below ``threshold_db`` relative to the peak. All-silent input
    gives an empty array.
    """
    mag = np.abs(wav)
    peak = float(mag.max()) if mag.size else 0.0
    if peak < MIN_PEAK:
        return wav[:0]
    loud = np.flatnonzero(mag > peak * 10.0 ** (threshold_db / 20.0))
    pad = round(keep * sample_rate)
    return wav[max(0, loud[0] - pad): min(wav.shape[0], loud[-1] + 1 + pad)]


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Exactly ``common.audio.io.resample`` (soxr HQ); float32 ``[round(N * target / orig)]``.

    Duplicated because importing ``common.audio`` imports jax through the package's
    ``__init__`` (seconds per shard process); a test checks the two agree bit for bit.
    """
    wav = np.asarray(wav, np.float32)
    if orig_sr == target_sr:
        return wav.copy()
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def synthesize_shard(spec: dict[str, Any]) -> dict[str, Any]:
    """Synthesise ``spec["utterances"]`` in order, write their FLACs, return their rows."""
    engine = espeak.Espeak.get()
    engine.reseed(int(spec["espeak_seed"]))
    sr, root = int(spec["sample_rate"]), Path(spec["root"])
    rows, skipped, seconds = [], [], 0.0
    for utt in spec["utterances"]:
        voice = espeak.Voice(**utt["voice"])
        phonemes = engine.phonemize(utt["text"], voice)
        wav = trim_silence(engine.synthesize(utt["text"], voice), espeak.SAMPLE_RATE)
        if not phonemes or wav.size == 0:
            skipped.append({"id": utt["id"], "reason": "no phonemes" if wav.size else "silent"})
            continue
        wav = np.clip(resample(wav, espeak.SAMPLE_RATE, sr), -1.0, 1.0)
        path = root / utt["split"] / utt["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav, sr, subtype="PCM_16", format="FLAC")
        duration = wav.shape[0] / sr
        seconds += duration
        rows.append({"split": utt["split"], "file_name": utt["file_name"], "id": utt["id"],
                     "text": utt["text"], "phonemes": phonemes, "speaker": voice.id,
                     "language": voice.language, "duration": duration,
                     "unseen": bool(utt["unseen"])})
    return {"shard": spec["shard"], "rows": rows, "skipped": skipped, "seconds": seconds}


# ------------------------------------------------------------------------ parent side


class ShardError(RuntimeError):
    """A shard's worker process failed; the message has the shard and its stderr."""


class _ShardRunner:
    """Runs shard specs in fresh worker processes; ``cancel`` terminates the running ones."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.cancelled = False
        # The worker imports ``common`` from this checkout even when it is not installed.
        repo = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH", "")
        self._env = {**os.environ, "PYTHONPATH": repo + (os.pathsep + path if path else "")}

    def run(self, spec: dict) -> dict | None:
        with self._lock:
            if self.cancelled:
                return None
            proc = subprocess.Popen([sys.executable, "-m", "common.data.corpus_worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self._env)
            self._procs.add(proc)
        try:
            out, err = proc.communicate(json.dumps(spec, ensure_ascii=False).encode())
        finally:
            with self._lock:
                self._procs.discard(proc)
        if self.cancelled:
            return None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-2000:]
            raise ShardError(f"corpus worker for shard {spec['shard']} failed with exit "
                             f"code {proc.returncode}:\n{tail}")
        return json.loads(out)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for proc in self._procs:
                proc.terminate()


def run_shards(make_spec: Callable[[int], dict], root: Path, target_seconds: float,
               workers: int, estimate: float, progress: bool = False) -> list[dict]:
    """Results of shards 0..k, where k is the first shard, in plan order, at which the
    total duration reaches ``target_seconds``.

    ``make_spec(shard)`` gives a shard's spec (its ``root`` must be ``root``). Shards run
    ``workers`` at a time; results are taken in plan order, so timing never changes which
    shards are kept, and the files of shards past k are deleted. ``estimate`` (seconds of
    audio per shard, until the first shard reports) only saves starting shards that
    would be thrown away. Raises ``ShardError`` if a worker fails (the others are
    stopped). ``progress`` shows a tqdm bar in seconds of audio.
    """
    from tqdm.auto import tqdm

    accepted: list[dict] = []
    finished: dict[int, dict | BaseException] = {}
    in_flight: dict[cf.Future, int] = {}
    total, next_shard = 0.0, 0
    runner = _ShardRunner()
    bar = tqdm(total=round(target_seconds), desc="espeak corpus", disable=not progress,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total} s of audio "
                                              "[{elapsed}<{remaining}{postfix}]")
    with cf.ThreadPoolExecutor(workers, thread_name_prefix="corpus") as pool:
        try:
            while True:
                while len(accepted) in finished and total < target_seconds:
                    result = finished.pop(len(accepted))
                    if isinstance(result, BaseException):
                        raise result
                    accepted.append(result)
                    total += result["seconds"]
                    estimate = total / len(accepted)
                    bar.update(min(result["seconds"], bar.total - bar.n))
                    bar.set_postfix(shards=len(accepted), refresh=False)
                    for s in result["skipped"]:
                        log.warning("corpus: skipped utterance %s (%s)", s["id"], s["reason"])
                if total >= target_seconds:
                    break
                if len(accepted) >= 3 and total == 0.0:
                    raise ShardError(f"the first {len(accepted)} shards produced no audio")
                known = total + sum(r["seconds"] for r in finished.values()
                                    if not isinstance(r, BaseException))
                while len(in_flight) < workers and (
                        not in_flight or known + estimate * len(in_flight) < target_seconds):
                    in_flight[pool.submit(runner.run, make_spec(next_shard))] = next_shard
                    next_shard += 1
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    # A failure counts only when its turn comes in plan order: a shard
                    # past the stopping one may fail without failing the build.
                    finished[in_flight.pop(fut)] = fut.exception() or fut.result()
        finally:
            runner.cancel()  # shards past the stopping one, or all of them on an error
            bar.close()
    for d in root.glob("*/[0-9]*"):  # <split>/<shard>: shards started but not kept
        if int(d.name) >= len(accepted):
            shutil.rmtree(d)
    return accepted


# ------------------------------------------------------------------------- worker side


def main() -> None:
    # The JSON result owns the real stdout; anything else that prints (espeak's C code,
    # a stray warning) goes to stderr instead of corrupting it.
    result_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    spec = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    json.dump(synthesize_shard(spec), result_out, ensure_ascii=False)
    result_out.close()


if __name__ == "__main__":
    main()
