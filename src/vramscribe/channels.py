"""One channel of a multi-channel file, and channels merged back into one transcript.

Call and interview recordings often put one speaker on each channel; mixed down
to mono, speech that overlaps in time comes out garbled or loses a speaker. With
``--split-channels`` each channel is decoded (here) and transcribed on its own,
then the channels' segments are merged by time, each labelled with its channel's
speaker (:func:`merge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import av

from vramscribe.audio import SAMPLE_RATE, _audio_stream, _check_file, _open, _reason
from vramscribe.errors import BadInput, InvalidRequest
from vramscribe.transcript import Transcript


def channel_count(path: Path | str) -> int:
    """How many channels the file's first audio track has."""
    path = Path(path)
    _check_file(path)
    container = _open(path)
    try:
        stream = _audio_stream(container, path)
        return int(stream.codec_context.channels or 1)
    finally:
        container.close()


def decode_channel(path: Path | str, channel: int) -> Any:
    """Channel ``channel`` (0-based) as 16 kHz float32 samples, decoded once."""
    import numpy as np

    path = Path(path)
    _check_file(path)
    container = _open(path)
    try:
        stream = _audio_stream(container, path)
        channels = int(stream.codec_context.channels or 1)
        if not 0 <= channel < channels:
            raise BadInput(f"{path}: has {channels} channel(s), no channel {channel + 1}")
        layout = stream.codec_context.layout.name
        resampler = av.AudioResampler(format="s16p", layout=layout, rate=SAMPLE_RATE)
        parts: list[Any] = []
        try:
            for frame in container.decode(stream):
                parts.extend(f.to_ndarray()[channel] for f in resampler.resample(frame))
            parts.extend(f.to_ndarray()[channel] for f in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise BadInput(f"{path}: the audio data cannot be decoded ({_reason(err)})") from None
    finally:
        container.close()
    if not parts:
        raise BadInput(f"{path}: contains no audio samples")
    return np.concatenate(parts).astype(np.float32) / 32768.0


def labels(count: int, names: Sequence[str]) -> list[str]:
    """Speaker labels: the names given, else ``channel 1``, ``channel 2``, ..."""
    if names and len(names) != count:
        raise InvalidRequest(
            f"channel_names gives {len(names)} name(s) for {count} channels", "channel_names"
        )
    return list(names) if names else [f"channel {k + 1}" for k in range(count)]


def merge(transcripts: Sequence[Transcript], speakers: Sequence[str]) -> Transcript:
    """The channels' segments in time order, each labelled with its channel's speaker."""
    segments = sorted(
        (replace(seg, speaker=speaker) for tr, speaker in zip(transcripts, speakers, strict=True)
         for seg in tr.segments),
        key=lambda s: (s.start, s.end),
    )  # fmt: skip
    first = transcripts[0]
    return Transcript(
        segments=tuple(segments),
        language=first.language,
        duration_s=max(t.duration_s for t in transcripts),
        model=first.model,
        timings={},
    )
