"""A WAV file's length read from its RIFF header, without a decoder.

A PCM (or float) WAV holds nothing a decoder could fail on: its length is its
data chunk's size, and the file is cut short exactly when it holds fewer bytes
than that chunk declares. Reading the header is a fraction of a millisecond,
where opening the file with FFmpeg costs several times that, and a service
probes every submitted file before it answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)
"""Data sizes streaming writers leave in the header: the length is not known."""


@dataclass(frozen=True, slots=True)
class WavLength:
    declared_s: float
    """What the header promises (the data chunk's size)."""
    present_s: float
    """What the file holds: less than declared when it was cut short."""


def riff_declared_seconds(path: Path) -> float | None:
    """The length a WAV header promises; None when it is not a WAV or does not say.

    FFmpeg quietly shortens a WAV's length to what the file holds, which hides
    truncation, so the data chunk's size is read from the header here.
    """
    header = _read_header(path)
    return None if header is None else header[1] / header[0]


def pcm_length(path: Path) -> WavLength | None:
    """The length of a PCM or float WAV from its header; None for any other file
    (another codec, no RIFF header, a size left unknown): those need a decoder."""
    header = _read_header(path, pcm_only=True)
    if header is None:
        return None
    byte_rate, size, offset, block = header
    present = min(size, max(path.stat().st_size - offset, 0))
    return WavLength(size / byte_rate, present // block * block / byte_rate)


def _read_header(path: Path, pcm_only: bool = False) -> tuple[int, int, int, int] | None:
    """Byte rate, data size, data offset and block size of a WAV, or None (also when the
    file cannot be read: the decoder's path then says why in its own words)."""
    try:
        with path.open("rb") as fh:
            return _parse(fh, pcm_only)
    except OSError:
        return None


def _parse(fh: BinaryIO, pcm_only: bool) -> tuple[int, int, int, int] | None:
    if fh.read(12)[8:12] != b"WAVE":
        return None
    byte_rate, block, codec = 0, 0, 0
    while len(chunk := fh.read(8)) == 8:
        chunk_id, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if chunk_id == b"fmt ":
            fmt = fh.read(size)
            if len(fmt) < 16:
                return None
            codec = int.from_bytes(fmt[0:2], "little")
            if codec == _EXTENSIBLE and len(fmt) >= 26:  # the sub-format's first two bytes
                codec = int.from_bytes(fmt[24:26], "little")
            byte_rate = int.from_bytes(fmt[8:12], "little")
            block = int.from_bytes(fmt[12:14], "little")
            fh.seek(size % 2, os.SEEK_CUR)
        elif chunk_id == b"data":
            if byte_rate <= 0 or block <= 0 or size in _UNKNOWN_SIZES:
                return None
            if pcm_only and codec not in (_PCM, _FLOAT):
                return None
            return byte_rate, size, fh.tell(), block
        else:
            fh.seek(size + size % 2, os.SEEK_CUR)
    return None
