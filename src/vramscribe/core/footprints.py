"""Memory estimates per (model, compute type, batch size, device kind).

Built-in defaults come from :mod:`profiles`; learned peaks override them,
because the only estimate that never lies is the one measured on this machine.
Peaks are learned per key and audio-length band (``BAND_EDGES_S``): a file is
estimated from the high-water mark of files of its own length, so a jitter
seen on short files is not multiplied by the growth guess for long ones, and
the growth model (:func:`~vramscribe.core.profiles.growth`) only bridges the
gap to the nearest band measured. The safety margin is the planner's, applied
once to the device; estimates carry no padding of their own. The book is
plain data so a later run starts from what earlier runs learned.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

from vramscribe.core.jobs import FootprintKey
from vramscribe.core.profiles import (
    BATCH8_EXTRA_MB,
    CUDA_CONTEXT_MB,
    batch_gain,
    growth,
    profile_for,
)
from vramscribe.errors import UnknownModel

__all__ = ["FootprintBook", "FootprintKey", "LearnedPeak", "builtin_estimate"]

# A process on the CPU pays the interpreter and libraries, not a CUDA context.
CPU_PROCESS_MB = 200.0
# Used for models we have no profile for (a local folder of an unknown size).
UNKNOWN_MODEL_MB = 5000.0
# Audio-length bands (upper edges, seconds) that peaks are learned in: within one band
# the growth model changes an estimate by at most a few percent.
BAND_EDGES_S = (60.0, 300.0, 900.0, 1800.0, 3600.0)


def band_of(audio_s: float) -> int:
    return bisect.bisect_left(BAND_EDGES_S, audio_s)


def resolve_compute_type(compute_type: str, device_kind: str) -> str:
    """What ``default``/``auto`` means on a device kind (faster-whisper's choice)."""
    if compute_type in ("default", "auto"):
        return "int8" if device_kind == "cpu" else "float16"
    return compute_type


def builtin_estimate(key: FootprintKey) -> float:
    """Loaded size in MB of one instance, before any growth over long audio."""
    model, compute_type, batch_size, device_kind = key
    profile = profile_for(model)
    if profile is None:
        if model.startswith(("/", ".", "~")):
            return UNKNOWN_MODEL_MB
        raise UnknownModel(f"no memory estimate for model {model!r}")
    ctype = resolve_compute_type(compute_type, device_kind)
    if ctype in ("int8", "int8_float16", "int8_bfloat16", "int8_float32"):
        mb = profile.int8_mb
    elif ctype == "float32":
        mb = CUDA_CONTEXT_MB + 2 * (profile.fp16_mb - CUDA_CONTEXT_MB)
    else:
        mb = profile.fp16_mb
    if batch_size > 1:
        mb += BATCH8_EXTRA_MB * min(batch_size - 1, 15) / 7
    if device_kind == "cpu":
        mb = mb - CUDA_CONTEXT_MB + CPU_PROCESS_MB
    return mb


@dataclass(slots=True)
class LearnedPeak:
    peak_mb: float
    audio_s: float
    samples: int = 1

    @property
    def loaded_mb(self) -> float:
        """The peak with the growth of its audio length taken out."""
        return self.peak_mb / growth(self.audio_s)


@dataclass(slots=True)
class FootprintBook:
    """Estimates for every key: learned if seen, built-in otherwise."""

    learned: dict[FootprintKey, LearnedPeak] = field(default_factory=dict)
    speeds: dict[FootprintKey, float] = field(default_factory=dict)
    alone: dict[FootprintKey, float] = field(default_factory=dict)
    """Speeds of jobs that had their device to themselves: the only ones a batch size's
    gain can be learned from, since a job sharing the GPU runs slower at any batch size."""
    bands: dict[tuple[FootprintKey, int], LearnedPeak] = field(default_factory=dict)
    """The high-water peak per key and audio-length band, with the audio it was seen on."""
    _base_cache: dict[FootprintKey, float] = field(default_factory=dict, repr=False)
    _anchor_cache: dict[tuple[FootprintKey, int], LearnedPeak | None] = field(
        default_factory=dict, repr=False
    )

    def loaded_mb(self, key: FootprintKey) -> float:
        """Best known loaded size (no growth) for ``key``; cached per key."""
        cached = self._base_cache.get(key)
        if cached is not None:
            return cached
        learned = self.learned.get(key)
        if learned is not None:
            value = learned.loaded_mb
        elif key[2] > 1 and (solo := self.learned.get(_solo(key))) is not None:
            # Learned at batch 1 only: what was measured, plus the batch slots' built-in cost.
            value = solo.loaded_mb + builtin_estimate(key) - builtin_estimate(_solo(key))
        else:
            value = builtin_estimate(key)
        self._base_cache[key] = value
        return value

    def estimate(self, key: FootprintKey, audio_s: float) -> float:
        """Expected peak in MB for a file of ``audio_s`` seconds.

        From the peaks learned in the file's own band, else the nearest shorter
        band grown to this length, else (shorter unknown) the nearest longer
        band's peak or the built-in figure grown, whichever is smaller.
        """
        if not self.bands:
            return self.loaded_mb(key) * growth(audio_s)
        band = band_of(audio_s)
        if (key, band) in self._anchor_cache:
            anchor = self._anchor_cache[(key, band)]
        else:
            anchor = self._anchor_cache[(key, band)] = self._anchor(key, band)
        if anchor is None:
            return self.loaded_mb(key) * growth(audio_s)
        if audio_s <= anchor.audio_s:
            return anchor.peak_mb
        return anchor.peak_mb * growth(audio_s) / growth(anchor.audio_s)

    def _anchor(self, key: FootprintKey, band: int) -> LearnedPeak | None:
        """The learned peak a file in ``band`` is estimated from (None: none learned)."""
        for b in range(band, -1, -1):
            if (key, b) in self.bands:
                return self.bands[(key, b)]
        for b in range(band + 1, len(BAND_EDGES_S) + 1):
            longer = self.bands.get((key, b))
            if longer is not None:
                # A longer file's peak bounds a shorter one's from above.
                grown = self.loaded_mb(key) * growth(BAND_EDGES_S[band])
                return LearnedPeak(min(longer.peak_mb, grown), BAND_EDGES_S[band])
        return None

    def observe_peak(self, key: FootprintKey, peak_mb: float, audio_s: float) -> None:
        """Record a finished instance's peak: the high-water mark of its key and band."""
        known = self.learned.get(key)
        candidate = LearnedPeak(peak_mb, audio_s)
        if known is None:
            self.learned[key] = candidate
        else:
            known.samples += 1
            if candidate.loaded_mb > known.loaded_mb:
                known.peak_mb, known.audio_s = peak_mb, audio_s
        band = self.bands.get((key, band_of(audio_s)))
        if band is None:
            self.bands[(key, band_of(audio_s))] = LearnedPeak(peak_mb, audio_s)
        else:
            band.samples += 1
            if peak_mb > band.peak_mb:
                band.peak_mb, band.audio_s = peak_mb, max(band.audio_s, audio_s)
        self._base_cache.clear()
        self._anchor_cache.clear()

    def observe_speed(self, key: FootprintKey, speed_x: float, alone: bool = True) -> None:
        """Record a job's speed (x real time); a moving average. ``alone``: no other
        instance of ours transcribed on its device meanwhile."""
        books = (self.speeds, self.alone) if alone else (self.speeds,)
        for book in books:
            old = book.get(key)
            book[key] = speed_x if old is None else 0.8 * old + 0.2 * speed_x

    def speed(self, key: FootprintKey) -> float:
        """Expected speed of one file in x real time, for expected end times."""
        learned = self.speeds.get(key)
        if learned is not None:
            return learned
        return self._solo_speed(_solo(key)) * self.batch_gain(key)

    def batch_gain(self, key: FootprintKey) -> float:
        """How much faster a file runs at ``key``'s batch size than at 1: learned, else built in."""
        if key[2] <= 1:
            return 1.0
        batched, solo = self.alone.get(key), self.alone.get(_solo(key))
        if batched is not None and solo:
            return batched / solo
        return batch_gain(key[2], key[3])

    def _solo_speed(self, key: FootprintKey) -> float:
        learned = self.speeds.get(key)
        if learned is not None:
            return learned
        profile = profile_for(key[0])
        if profile is None:
            return 10.0
        return profile.speed_x if key[3] != "cpu" else max(1.0, profile.speed_x / 16)

    def to_json(self) -> str:
        return json.dumps(
            {
                "learned": [
                    {
                        "key": list(k),
                        "peak_mb": v.peak_mb,
                        "audio_s": v.audio_s,
                        "samples": v.samples,
                    }
                    for k, v in sorted(self.learned.items())
                ],
                "speeds": [{"key": list(k), "speed_x": v} for k, v in sorted(self.speeds.items())],
                "alone": [{"key": list(k), "speed_x": v} for k, v in sorted(self.alone.items())],
                "bands": [
                    {
                        "key": list(k),
                        "band": b,
                        "peak_mb": v.peak_mb,
                        "audio_s": v.audio_s,
                        "samples": v.samples,
                    }
                    for (k, b), v in sorted(self.bands.items())
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> FootprintBook:
        data: dict[str, Any] = json.loads(text)
        book = cls()
        for row in data.get("learned", []):
            m, c, b, d = row["key"]
            book.learned[(m, c, int(b), d)] = LearnedPeak(
                float(row["peak_mb"]), float(row["audio_s"]), int(row.get("samples", 1))
            )
        for row in data.get("bands", []):
            m, c, b, d = row["key"]
            book.bands[((m, c, int(b), d), int(row["band"]))] = LearnedPeak(
                float(row["peak_mb"]), float(row["audio_s"]), int(row.get("samples", 1))
            )
        for name, speeds in (("speeds", book.speeds), ("alone", book.alone)):
            for row in data.get(name, []):
                m, c, b, d = row["key"]
                speeds[(m, c, int(b), d)] = float(row["speed_x"])
        return book


def _solo(key: FootprintKey) -> FootprintKey:
    return (key[0], key[1], 1, key[3])
