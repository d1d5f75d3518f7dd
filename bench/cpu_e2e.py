"""vramscribe against what a CPU user would otherwise run, whole processes, same files.

    python bench/cpu_e2e.py [--rounds 3] [--json PATH]

Twelve real-speech files, copies of the test clips (``tests/data/audio``):
jfk.flac x5 (11 s each), hotwords.mp3 x5 (4 s), multilingual.mp3 x2 (60 s), 195 s
in all. Five ways to transcribe them with the bundled tiny.en, with identical
decoding settings (int8, beam 5, no VAD):

- ``plain-loop``: one process, the model loaded once, files one after another
  (faster-whisper's README way), all cores to one instance;
- ``batched-loop``: the same with ``BatchedInferencePipeline`` at batch 8;
- ``warm-pool-2``: two processes of one thread each, each loading the model
  once, the files split between them in turn (GNU parallel's way);
- ``vramscribe``: ``vramscribe transcribe`` with its defaults;
- ``vramscribe-no-reuse``: the same with ``--no-reuse`` (one instance per file).

Each is timed as a whole process, from spawn to exit (interpreter start,
imports, loads and all), in alternating rounds; the table shows the median
round. Transcripts are compared with the plain loop's, normalised (lower
case, punctuation stripped): the batched loop decodes fixed 30 s windows in
parallel, so its long files may differ by a few words; the others must not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT / "tests" / "data" / "audio"
FILES = [("jfk.flac", 5), ("hotwords.mp3", 5), ("multilingual.mp3", 2)]

LOOP = r"""
import sys, json, pathlib
from faster_whisper import WhisperModel, BatchedInferencePipeline
from vramscribe.audio import decode_samples
from vramscribe.engines.whisper import batch_windows
from vramscribe.models import resolve_model
threads, batch, out, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8",
                     cpu_threads=threads, local_files_only=True)
pipe = BatchedInferencePipeline(model) if batch > 1 else None
texts = {}
for f in files:
    if pipe is None:
        segs, _ = model.transcribe(f, beam_size=5, vad_filter=False)
    else:
        audio = decode_samples(f)
        segs, _ = pipe.transcribe(audio, beam_size=5, batch_size=batch,
                                  clip_timestamps=batch_windows(audio, False))
    texts[pathlib.Path(f).name] = " ".join(s.text.strip() for s in segs)
pathlib.Path(out).write_text(json.dumps(texts))
"""

METHODS = ["plain-loop", "batched-loop", "warm-pool-2", "vramscribe", "vramscribe-no-reuse"]


def make_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, copies in FILES:
        stem, ext = name.rsplit(".", 1)
        for k in range(copies):
            path = folder / f"{stem}-{k + 1}.{ext}"
            shutil.copyfile(AUDIO / name, path)
            out.append(path)
    return out


def normalise(text: str) -> str:
    kept = "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text)
    return " ".join(kept.split())


def _loop(threads: int, batch: int, files: list[Path], out: Path) -> list[list[str]]:
    args = [sys.executable, "-c", LOOP, str(threads), str(batch), str(out), *map(str, files)]
    return [args]


def commands(method: str, files: list[Path], work: Path) -> list[list[str]]:
    """The processes one method runs (several at once for the pool)."""
    cores = os.cpu_count() or 1
    if method == "plain-loop":
        return _loop(cores, 1, files, work / "texts.json")
    if method == "batched-loop":
        return _loop(cores, 8, files, work / "texts.json")
    if method == "warm-pool-2":
        halves = [files[0::2], files[1::2]]
        return [_loop(1, 1, half, work / f"texts-{i}.json")[0] for i, half in enumerate(halves)]
    cli = [sys.executable, "-m", "vramscribe", "transcribe", str(files[0].parent),
           "--device", "cpu", "--format", "txt", "--out-dir", str(work / "out")]  # fmt: skip
    if method == "vramscribe-no-reuse":
        cli.append("--no-reuse")
    return [cli]


def run_once(method: str, files: list[Path], scratch: Path) -> tuple[float, dict[str, str]]:
    work = scratch / f"{method}-{time.monotonic_ns()}"
    work.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VRAMSCRIBE_DATA": str(work / "data")}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for cmd in commands(method, files, work)
    ]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - start
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"{method} failed:\n{err.decode(errors='replace')[-2000:]}")
    return wall, _texts(work)


def _texts(work: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for part in work.glob("texts*.json"):
        texts.update(json.loads(part.read_text()))
    for txt in (work / "out").glob("*.txt") if (work / "out").exists() else []:
        texts[txt.stem] = txt.read_text()
    return {Path(k).stem: normalise(v) for k, v in texts.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cpu-e2e-"))
    files = make_files(scratch / "audio")
    walls: dict[str, list[float]] = {m: [] for m in METHODS}
    texts: dict[str, dict[str, str]] = {}
    for r in range(args.rounds):
        order = METHODS if r % 2 == 0 else list(reversed(METHODS))
        for method in order:
            wall, got = run_once(method, files, scratch)
            walls[method].append(wall)
            texts[method] = got
            print(f"round {r + 1} {method:<20} {wall:6.2f} s", file=sys.stderr, flush=True)
    report(walls, texts, len(files))
    if args.json:
        args.json.write_text(json.dumps({"walls": walls, "files": len(files)}, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def report(walls: dict[str, list[float]], texts: dict[str, dict[str, str]], n: int) -> None:
    median = {m: statistics.median(v) for m, v in walls.items()}
    best_loop = min(median["plain-loop"], median["batched-loop"])
    reference = texts["plain-loop"]
    print(f"{n} files, {len(next(iter(walls.values())))} rounds, cores: {os.cpu_count()}")
    print(f"{'method':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'/best loop':>11} "
          f"{'/pool-2':>8} {'same text':>10}")  # fmt: skip
    for m in METHODS:
        same = sum(texts[m].get(k) == v for k, v in reference.items())
        print(f"{m:<20} {median[m]:>9.2f} {min(walls[m]):>7.2f} {max(walls[m]):>7.2f} "
              f"{median[m] / best_loop:>11.2f} {median[m] / median['warm-pool-2']:>8.2f} "
              f"{same:>5}/{len(reference)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
