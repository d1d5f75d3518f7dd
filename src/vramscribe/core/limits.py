"""Limits users set on a shared device: what vramscribe may hold, and what it must leave.

A neighbour whose allocation fails never shows its peak in a reading, so no
amount of watching protects it; users who share a GPU say what is theirs, as
they do with vLLM's ``--gpu-memory-utilization``:

- ``--memory-limit cuda:0=16GiB``: vramscribe holds at most this much on the
  device, counting every instance's reservation or what it is seen to hold,
  whichever is larger (``held`` in :mod:`vramscribe.core.room`);
- ``--memory-fraction 0.6``: the same, as a fraction of each device's total
  (with both, the smaller limit wins);
- ``--reserve cuda:1=10GiB``: always left to others, subtracted from the
  measured free memory like the safety margin (which applies to the physical
  free memory, not to the limit).

The values are kept in bytes (``reserve_bytes``, ``memory_limit_bytes``, the
names of the per-device fields everywhere: snapshots, scenarios, the API).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vramscribe.errors import InvalidLimit

MIB = 1024 * 1024
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": MIB,
    "mib": MIB,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``16GiB``, ``512MiB``, ``16G`` (binary), ``16GB`` (decimal) or ``1024``."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidLimit(
            f"bad size {text!r}: expected a number with a unit, e.g. 16GiB, 512MiB or 16GB"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise InvalidLimit(f"bad size {text!r}: must be more than 0 bytes")
    return size


def parse_device_sizes(values: Iterable[str], option: str) -> dict[str, int]:
    """``DEVICE=SIZE`` values (repeatable, or comma-separated) as bytes per device id."""
    out: dict[str, int] = {}
    for value in values:
        for part in (p for p in value.split(",") if p.strip()):
            device, sep, size = part.partition("=")
            if not sep or not device.strip():
                raise InvalidLimit(f"{option} {part!r}: expected DEVICE=SIZE, e.g. cuda:0=16GiB")
            out[device.strip()] = parse_size(size)
    return out


def check_fraction(fraction: float | None) -> float | None:
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise InvalidLimit(f"--memory-fraction must be in (0, 1], got {fraction}")
    return fraction


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """One device's limits, resolved: bytes left to others, and the most we may hold."""

    reserve_bytes: int = 0
    memory_limit_bytes: int | None = None

    @property
    def reserve_mb(self) -> float:
        return self.reserve_bytes / MIB

    @property
    def limit_mb(self) -> float | None:
        return None if self.memory_limit_bytes is None else self.memory_limit_bytes / MIB

    def describe(self) -> str:
        """The limits in words, for the views ("" when none is set)."""
        parts = []
        if self.memory_limit_bytes is not None:
            parts.append(f"ours at most {self.memory_limit_bytes / MIB / 1024:.1f} GiB")
        if self.reserve_bytes:
            parts.append(f"{self.reserve_bytes / MIB / 1024:.1f} GiB left to others")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """The limits a run was given, per device id (and one fraction for all devices)."""

    memory_limit_bytes: Mapping[str, int] = field(default_factory=dict)
    memory_fraction: float | None = None
    reserve_bytes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fraction(self.memory_fraction)
        for name in ("memory_limit_bytes", "reserve_bytes"):
            for device, size in getattr(self, name).items():
                if size <= 0:
                    raise InvalidLimit(f"{name} for {device} must be more than 0, got {size}")

    @property
    def any(self) -> bool:
        return bool(self.memory_limit_bytes or self.reserve_bytes or self.memory_fraction)

    def for_device(self, device_id: str, total_mb: float) -> DeviceLimits:
        limit = self.memory_limit_bytes.get(device_id)
        if self.memory_fraction is not None:
            share = int(self.memory_fraction * total_mb * MIB)
            limit = share if limit is None else min(limit, share)
        return DeviceLimits(self.reserve_bytes.get(device_id, 0), limit)

    def check(
        self, device_ids: Iterable[str], totals_mb: Mapping[str, float] | None = None
    ) -> None:
        """Refuse limits for devices this run does not use, and reserves that leave nothing."""
        known = sorted(device_ids)
        for name, option in (
            ("memory_limit_bytes", "--memory-limit"),
            ("reserve_bytes", "--reserve"),
        ):
            for device in getattr(self, name):
                if device not in known:
                    raise InvalidLimit(
                        f"{option}: unknown device {device!r}; this run uses {', '.join(known)}"
                    )
        for device, size in self.reserve_bytes.items():
            total = (totals_mb or {}).get(device)
            if total is not None and size >= total * MIB:
                raise InvalidLimit(
                    f"--reserve {device}={size / MIB / 1024:.1f}GiB leaves nothing: the device "
                    f"has {total / 1024:.1f} GiB"
                )
