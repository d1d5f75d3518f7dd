"""What public measurements say about each Whisper model (DESIGN.md's table).

These numbers are priors: the planner starts from them and the footprint book
replaces them with what it observes. Memory includes ~400 MB of CUDA context
per process; speed is one instance alone on an A100-class GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CUDA_CONTEXT_MB = 400.0
BATCH8_EXTRA_MB = 1500.0
# Peak memory rises ~25% over long files; we model it as linear up to an hour.
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


PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile("tiny", 600, 500, 160, 0.5, 3.0),
        ModelProfile("base", 750, 600, 112, 0.7, 3.0),
        ModelProfile("small", 1200, 700, 64, 1.3, 3.0),
        ModelProfile("medium", 2600, 1700, 32, 3.5, 2.0),
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
    chunks = max(1, math.ceil(max(0.0, audio_s) / CHUNK_S))
    return max(b for b in BATCH_CANDIDATES if b <= chunks)


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
