"""Neighbours: processes that are not ours, sharing a simulated GPU.

Each shape turns into a script of ``(time, mb)`` steps for the fake device:
from ``time`` on, the neighbour wants ``mb``. A step the device cannot give
fails and the neighbour keeps what it had; the device counts that as a
foreign out-of-memory event (we crowded someone else's work out). A spike is
allocated at its start, so a spike that finds the memory taken is such an event.

``min_mb`` is the least the neighbour ever holds after t=0, which the lower
bound may count on being unavailable to us.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from vramscribe.errors import ScenarioError

GIB_MB = 1024.0


@dataclass(frozen=True, slots=True)
class ForeignSpec:
    """Random levels: the neighbour jumps to a level uniform in [min, max] every ``period_s``."""

    min_mb: float
    max_mb: float
    period_s: float

    def script(self, rng: random.Random, horizon_s: float) -> list[tuple[float, float]]:
        steps = int(horizon_s // self.period_s) + 1
        return [(k * self.period_s, rng.uniform(self.min_mb, self.max_mb)) for k in range(steps)]


@dataclass(frozen=True, slots=True)
class ConstantNeighbour:
    """A neighbour that holds ``mb`` from the start, for ever."""

    mb: float

    @property
    def min_mb(self) -> float:
        return self.mb

    def script(self, rng: random.Random, horizon_s: float) -> list[tuple[float, float]]:
        return [(0.0, self.mb)]


@dataclass(frozen=True, slots=True)
class SpikeNeighbour:
    """Idles at ``base_mb``; holds ``peak_mb`` for ``duration_s`` every ``period_s``.

    The first spike starts at ``offset_s``.
    """

    base_mb: float
    peak_mb: float
    duration_s: float
    period_s: float
    offset_s: float = 0.0

    @property
    def min_mb(self) -> float:
        return self.base_mb

    def script(self, rng: random.Random, horizon_s: float) -> list[tuple[float, float]]:
        steps = [(0.0, self.base_mb)]
        start = self.offset_s
        while start <= horizon_s:
            steps.append((start, self.peak_mb))
            steps.append((start + self.duration_s, self.base_mb))
            start += self.period_s
        return steps


Neighbour = ForeignSpec | ConstantNeighbour | SpikeNeighbour


def _mb(data: dict[str, Any], stem: str) -> float:
    """``<stem>_mb`` or ``<stem>_gib`` (or ``mb``/``gib`` for an empty stem), in MB."""
    prefix = f"{stem}_" if stem else ""
    if f"{prefix}mb" in data:
        return float(data[f"{prefix}mb"])
    if f"{prefix}gib" in data:
        return float(data[f"{prefix}gib"]) * GIB_MB
    raise ScenarioError(f"neighbour needs {prefix}mb or {prefix}gib: {data!r}")


def parse_neighbour(data: dict[str, Any]) -> Neighbour:
    """Read a GPU's ``foreign`` entry; without ``shape`` it is today's random levels."""
    shape = data.get("shape", "random")
    if shape == "random":
        return ForeignSpec(_mb(data, "min"), _mb(data, "max"), float(data.get("period_s", 60.0)))
    if shape == "constant":
        return ConstantNeighbour(_mb(data, ""))
    if shape == "periodic_spike":
        spike = SpikeNeighbour(
            _mb(data, "base"),
            _mb(data, "peak"),
            float(data["duration_s"]),
            float(data["period_s"]),
            float(data.get("offset_s", 0.0)),
        )
        if not 0 < spike.duration_s < spike.period_s:
            raise ScenarioError("a periodic spike needs 0 < duration_s < period_s")
        return spike
    raise ScenarioError(f"unknown neighbour shape {shape!r} (random, constant, periodic_spike)")
