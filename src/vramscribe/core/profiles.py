"""What public measurements say about each Whisper model (docs/design.md's table).

These numbers are priors: the planner starts from them and the footprint book
replaces them with what it observes. Memory includes ~400 MB of CUDA context
per process; speed is one instance alone at batch size 1 on an A100-class GPU,
in x real time, with faster-whisper's default beam size 5.

The tables were fixed from the public measurements cited below before any
policy was tuned against the simulator, and are not to be adjusted to make a
policy look better. docs/simulator.md explains each derivation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

CUDA_CONTEXT_MB = 400.0
# faster-whisper README (v1.1.0 benchmark, RTX 3070 Ti): large-v2 at batch 8 uses
# 6090 MB against 4525 MB at batch 1 in fp16 (+1565), 4500 against 2926 in int8 (+1574).
BATCH8_EXTRA_MB = 1500.0
# Growth over a long file. faster-whisper decodes one 30 s window at a time (batch 1) or
# B windows per step (batched), so nothing it holds on the GPU scales with the file; what
# grows is CTranslate2's caching allocator's high-water mark, as windows with longer
# outputs and prompts come along. Measured: large-v2 fp16 on a 3-hour file peaked at
# 5798 MB against the README's 4755 MB on 13 min (+22%), rising in steps that slowed
# as the file went on (https://github.com/SYSTRAN/faster-whisper/issues/390); on the
# CPU, memory stayed flat over an hour of small.en
# (https://github.com/SYSTRAN/faster-whisper/issues/249). We take +25% reached at an
# hour, linearly: the prior only bridges the gap to the nearest length band measured
# on this machine (``FootprintBook``), where the worker's reported peaks replace it.
GROWTH_AT_FULL = 0.25
GROWTH_FULL_AUDIO_S = 3600.0


@dataclass(frozen=True, slots=True)
class ModelProfile:
    name: str
    fp16_mb: float
    int8_mb: float
    speed_x: float
    load_s: float
    s_max: float


# Speeds (x real time, batch 1, beam 5, fp16, A100-class GPU):
#
# large-v3 16: faster-whisper runs 13 min of audio with large-v2/v3 fp16 in 54 s on a V100S
#   (14.4x, README at commit 00cc7e1, https://github.com/SYSTRAN/faster-whisper/blob/00cc7e1/README.md),
#   52.0 s on an RTX 2080 Ti (15.0x, https://github.com/SYSTRAN/faster-whisper/issues/1030)
#   and 51 s on an A30 (15.3x, https://github.com/SYSTRAN/faster-whisper/issues/720);
#   an A100 is a little faster at this latency-bound batch size.
# medium 22: 1.41x large-v2 in both https://github.com/SYSTRAN/faster-whisper/issues/172
#   (RTX 3090, 24 min: 66.65 s vs 47.24 s) and the RTX 4090 table of
#   https://github.com/allenhutchison/podcast-rag/blob/44ed71c/docs/faster-whisper-benchmark.md
#   (13.8 min: large-v3 29.72 s, medium 21.01 s); 16 x 1.41 = 22.6.
# small 40: 2.50x large-v3 in the same RTX 4090 table (11.89 s); 16 x 2.50 = 40.
# tiny 72: 4.50x large-v3 in the same RTX 4090 table (6.61 s); 16 x 4.50 = 72.
# base 62: between tiny and small; in issue 1030's laptop table
#   (https://github.com/SYSTRAN/faster-whisper/issues/1030, RTX 3060 Laptop) base takes
#   1.15x tiny's time (32.72 s vs 28.44 s) and small 1.63x base's (53.21 s): 72 / 1.15 = 63,
#   40 x 1.63 = 65; we take 62.
# large-v3-turbo 43, distil-large-v3 32: issue 1030 (RTX 2080 Ti, fp16, 13 min): large-v3
#   52.0 s, turbo 19.16 s (2.72x), distil-large-v3 26.13 s (1.99x); 16 x 2.72 = 43.5,
#   16 x 1.99 = 31.9.
# The earlier table (tiny 160, base 112, small 64, medium 32) scaled openai-whisper's relative
# speeds and was 1.5-2.2x optimistic for the small models.
#
# Memory (fp16 / int8 MB): issue 1030 measures large-v3 4521 / 2953, distil-large-v3
# 2409 / 1481, large-v3-turbo 2537 / 1545; the smaller models keep the design's estimates.
# Load times: issue 1030's laptop table (tiny 0.51 s, base 0.70 s, small 2.41 s, medium
# 6.95 s) and the RTX 4090 table (tiny 0.87 s, small 1.72 s, medium 3.89 s, large-v3
# 1.73 s from a warm disk cache); we keep the design's values, between the two.
#
# S_max (aggregate throughput of many batch-1 processes on one GPU, in solo units): about
# 2 for large models and 3 for small ones. Processes time-share the GPU: two parallel
# large jobs on a T4 each took twice as long as one
# (https://github.com/SYSTRAN/faster-whisper/issues/441), and more workers on one GPU
# "will not increase the throughput by much" (https://github.com/SYSTRAN/faster-whisper/issues/100).
PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile("tiny", 600, 500, 72, 0.5, 3.0),
        ModelProfile("base", 750, 600, 62, 0.7, 3.0),
        ModelProfile("small", 1200, 700, 40, 1.3, 3.0),
        ModelProfile("medium", 2600, 1700, 22, 3.5, 2.0),
        ModelProfile("large-v3", 4600, 3000, 16, 6.5, 2.0),
        ModelProfile("large-v3-turbo", 2550, 1550, 43, 3.5, 2.0),
        ModelProfile("distil-large-v3", 2400, 1500, 32, 3.5, 2.0),
    )
}
ALIASES = {
    "large": "large-v3",
    "large-v2": "large-v3",
    "large-v1": "large-v3",
    "turbo": "large-v3-turbo",
    "distil-large-v2": "distil-large-v3",
    "distil-medium.en": "medium",
    "distil-small.en": "small",
}


@functools.lru_cache(maxsize=1024)
def profile_for(model: str) -> ModelProfile | None:
    """Find the profile for a model name, ignoring ``.en`` and path prefixes."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    name = name.removeprefix("faster-whisper-").removeprefix("whisper-")
    name = ALIASES.get(name, name)
    if name.endswith(".en"):
        name = name[:-3]
    name = ALIASES.get(name, name)
    return PROFILES.get(name)


BATCH_CANDIDATES = (1, 2, 4, 8, 16)
CHUNK_S = 30.0
# Speed of one instance at batch size B over batch 1, on a GPU: faster-whisper's
# README gives 13 min of large-v2 in 63 s at batch 1 and 17 s at batch 8 (3.7x)
# on an RTX 3070 Ti; the other sizes are interpolated and saturate past 8.
GPU_BATCH_GAIN = {1: 1.0, 2: 1.8, 4: 2.8, 8: 3.7, 16: 4.2}
# The most one GPU gives, in solo-instance units, whatever runs on it: the best
# measured batched throughput (batch 16). See ``shared_speeds``.
GPU_THROUGHPUT_CEILING = GPU_BATCH_GAIN[16]


def batch_gain(batch_size: int, device_kind: str) -> float:
    """Built-in speed-up of batch size ``batch_size`` over 1 (learned values replace it).

    On the CPU batching is not assumed to help until measured: threads already
    share the cores, so ``auto`` means 1 there.
    """
    if device_kind == "cpu" or batch_size <= 1:
        return 1.0
    known = [b for b in GPU_BATCH_GAIN if b <= batch_size]
    return GPU_BATCH_GAIN[max(known)]


def max_batch(audio_s: float) -> int:
    """The largest useful batch size for a file: one slot per 30 s window, at most 16."""
    chunks = math.ceil(audio_s / CHUNK_S) if audio_s > 0 else 1
    for b in _DESCENDING:
        if b <= chunks:
            return b
    return 1


_DESCENDING = sorted(BATCH_CANDIDATES, reverse=True)


def growth(audio_s: float) -> float:
    """Factor by which an instance's memory exceeds its loaded size after ``audio_s``."""
    return 1.0 + GROWTH_AT_FULL * min(1.0, max(0.0, audio_s) / GROWTH_FULL_AUDIO_S)


def contention(k: int, s_max: float) -> float:
    """Aggregate throughput of ``k`` concurrent instances, in solo-instance units.

    S(k) = S_max * k / (S_max + k - 1): 1 for one instance, approaching S_max.
    """
    if k <= 0:
        return 0.0
    return s_max * k / (s_max + k - 1)


def shared_speeds(
    gains: Sequence[float], s_max: float, ceiling: float = GPU_THROUGHPUT_CEILING
) -> list[float]:
    """Speed of each instance transcribing on one GPU, as a multiple of its solo speed.

    ``gains`` are the instances' batch gains (1 at batch size 1). Processes
    time-share the GPU: with ``k`` of them each gets ``S(k)/k`` of its own
    standalone speed (``gain`` x solo), so one process alone at batch 8 runs at
    3.7x and ``k`` batch-1 processes together give ``S(k)`` as before. Batching
    inside a process is what fills the GPU, so the total, in solo units, is
    capped at ``ceiling`` (the batch-16 gain) and every instance is slowed
    alike when the cap binds. docs/simulator.md says why the gains are not
    weights inside ``S``.
    """
    k = len(gains)
    if k == 0:
        return []
    share = contention(k, s_max) / k
    total = share * sum(gains)
    scale = min(1.0, ceiling / total) if total > 0 else 1.0
    return [g * share * scale for g in gains]


# Beam search keeps one decoder state (self- and cross-attention caches) per hypothesis;
# the profiles were measured at faster-whisper's default of 5. Each hypothesis beyond
# that is priced at 2% of the model's weights in fp16, a deliberately rough term (for
# large-v3, ~65 MB a beam) that learned peaks at the default beam then carry.
DEFAULT_BEAMS = 5
EXTRA_BEAM_FRACTION = 0.02


def decoding_extra_mb(model: str, beams: int) -> float:
    """Memory a job's wider beam search (``beams`` = max(beam size, best of)) adds."""
    profile = profile_for(model)
    if profile is None or beams <= DEFAULT_BEAMS:
        return 0.0
    return (beams - DEFAULT_BEAMS) * EXTRA_BEAM_FRACTION * (profile.fp16_mb - CUDA_CONTEXT_MB)
