"""Finding the audio to transcribe, and rejecting what cannot be decoded before it costs GPU time.

The scheduler sizes jobs by audio length and may hold a GPU slot for a job for a
long time, so every input is probed here first: a file that is empty, is not
audio, or was cut short fails fast with a message the user can act on, instead
of failing inside a worker.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vramscribe.errors import BadInput, InputNotFound
from vramscribe.wav import pcm_length, riff_declared_seconds

AUDIO_EXTENSIONS: tuple[str, ...] = (
    ".wav",
    ".mp3",
    ".flac",
    ".m4a",
    ".aac",
    ".ogg",
    ".oga",
    ".opus",
    ".wma",
    ".aif",
    ".aiff",
    ".amr",
    ".ac3",
    ".webm",
    ".mp4",
    ".m4v",
    ".mkv",
    ".mka",
    ".mov",
    ".avi",
    ".wmv",
    ".mpeg",
    ".mpg",
    ".3gp",
)

# A tail this long is demuxed after seeking, so probing a long file stays cheap.
_TAIL_S = 5.0
# How far the real end may fall short of the declared length before the file
# counts as truncated: bitrate-based estimates (mp3 without a Xing header) are
# only approximate, so small shortfalls are not errors.
_TRUNCATION_SLACK_S = 1.0
_TRUNCATION_SLACK_FRACTION = 0.05
# Decoding this much from the start proves the codec can read the data.
_HEAD_DECODE_S = 1.0


@dataclass
class Discovery:
    """What :func:`discover` found: (file, root it was found under) pairs, and problems."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def is_audio_name(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def discover(paths: Sequence[str | Path]) -> Discovery:
    """Expand the user's paths into the audio files to transcribe.

    Folders are searched recursively for known audio extensions, skipping hidden
    files and folders (editor swap files, ``.git``, our own ``.tmp`` outputs).
    A file named explicitly is taken whatever its extension: the user asked for
    it, and :func:`probe_duration` will say if it is not audio. The root is
    kept with each file so outputs can mirror the input tree.
    """
    found = Discovery()
    seen: set[Path] = set()

    def add(file: Path, root: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            found.files.append((file, root))

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            hits, errors = _walk(path)
            found.errors.extend(errors)
            if not hits and not errors:
                looked_for = ", ".join(AUDIO_EXTENSIONS)
                found.errors.append(f"no audio files under {raw} (looked for {looked_for})")
            for file in hits:
                add(file, path)
        elif path.is_file():
            add(path, path.parent)
        elif path.exists():
            found.errors.append(f"not a regular file or folder: {raw}")
        else:
            found.errors.append(f"no such file or folder: {raw}")
    found.files.sort(key=lambda pair: str(pair[0]))
    return found


def _walk(root: Path) -> tuple[list[Path], list[str]]:
    hits: list[Path] = []
    errors: list[str] = []

    def on_error(err: OSError) -> None:
        errors.append(f"cannot read folder {err.filename}: {err.strerror}")

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            file = Path(folder) / name
            if not name.startswith(".") and is_audio_name(file) and file.is_file():
                hits.append(file)
    return hits, errors


def probe_duration(path: Path | str) -> float:
    """Length of the audio in seconds, after checking that it can really be decoded.

    The header's length is not trusted on its own: a file cut short keeps its
    original header (an mp3's Xing frame, a flac's STREAMINFO), and PyAV then
    reports the full length while demuxing simply stops early without error.
    So the first second is decoded and the last few seconds are demuxed (after a
    seek, to stay fast on long files) to find where the audio really ends.
    """
    path = Path(path)
    _check_file(path)
    declared: float | None
    if (wav := pcm_length(path)) is not None:  # nothing to decode: the header says it all
        declared, real = wav.declared_s, wav.present_s
    else:
        declared, real = _probe_decoding(path)
    if real <= 0:
        raise BadInput(f"{path}: contains no audio samples")
    if declared is None:
        return real
    if real < declared - max(_TRUNCATION_SLACK_S, declared * _TRUNCATION_SLACK_FRACTION):
        raise BadInput(
            f"{path}: truncated: the header says {declared:.1f} s but the audio "
            f"stops at {real:.1f} s (was the download or copy interrupted?)"
        )
    # The header counts encoder padding correctly; fall back to what was read
    # only when the header was a guess that came out short.
    return real if real > declared + _TRUNCATION_SLACK_S else declared


def _probe_decoding(path: Path) -> tuple[float | None, float]:
    """The declared length and where the audio really ends, found with a decoder."""
    container = _open(path, probing=True)
    try:
        stream = _audio_stream(container, path)
        declared = _declared_duration(container, stream)
        if container.format.name == "wav":
            declared = riff_declared_seconds(path) or declared
        head_end = _decode_head(container, stream, path)
        real = _real_end(container, stream, declared, head_end)
        if real is None:
            real = _decoded_seconds(path)
    finally:
        container.close()
    return declared, real


def decode_check(path: Path | str) -> None:
    """Raise :class:`BadInput` unless the whole file decodes; slower than probing, but thorough."""
    path = Path(path)
    _check_file(path)
    if _decoded_seconds(path) <= 0:
        raise BadInput(f"{path}: contains no audio samples")


SAMPLE_RATE = 16000


def decode_samples(path: Path | str) -> Any:
    """The whole file as 16 kHz mono float32 samples (what Whisper reads), decoded once.

    Raises :class:`BadInput` with the same words as :func:`decode_check`: the
    worker decodes each input one time and hands the samples to the engine,
    instead of checking the file and then letting the engine decode it again.
    """
    import numpy as np

    path = Path(path)
    _check_file(path)
    container = _open(path)
    try:
        stream = _audio_stream(container, path)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        parts: list[Any] = []
        done = 0.0
        try:
            for frame in container.decode(stream):
                done += frame.samples / (frame.sample_rate or 1)
                parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise BadInput(
                f"{path}: the audio data cannot be decoded after {done:.1f} s ({_reason(err)})"
            ) from None
    finally:
        container.close()
    if not parts:
        raise BadInput(f"{path}: contains no audio samples")
    samples = np.concatenate(parts).astype(np.float32) / 32768.0
    if not len(samples):
        raise BadInput(f"{path}: contains no audio samples")
    return samples


def _check_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputNotFound(f"no such file: {path}") from None
    except OSError as err:
        raise BadInput(f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadInput(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        # A pipe or device would block or never end; only files have a length to probe.
        raise BadInput(f"{path}: is not a regular file")
    if info.st_size == 0:
        raise BadInput(f"{path}: the file is empty (0 bytes)")


# How much of a WAV file FFmpeg reads to learn its streams: its header says everything,
# and the default (5 MB) made FFmpeg read and decode that much PCM before the probe began.
_WAV_PROBE_BYTES = "4096"


def _open(path: Path, *, probing: bool = False) -> Any:
    """Open ``path`` with PyAV. Only the probe looks for a WAV header first: it opens the
    file itself, and the worker's decode opens its input once (and reads it all anyway)."""
    options = {"probesize": _WAV_PROBE_BYTES} if probing and _is_wav(path) else None
    try:
        return av.open(str(path), mode="r", options=options)
    except av.error.InvalidDataError:
        raise BadInput(f"{path}: {_unopenable_reason(path)}") from None
    except OSError as err:
        # Before FFmpegError: PyAV's permission and I/O errors are OSErrors too.
        raise BadInput(f"{path}: cannot be read ({err.strerror or err})") from None
    except av.error.FFmpegError as err:
        raise BadInput(f"{path}: {_unopenable_reason(path)} [{_reason(err)}]") from None


def _is_wav(path: Path) -> bool:
    """Whether ``path`` starts like a WAV file (RIFF, or RF64 for files over 4 GiB)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError:
        return False  # av.open says why, in the words the probe uses for every format
    return head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"


# Leading bytes of common formats, to tell "damaged audio" from "not audio at all".
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"ID3", "MP3"),
    (0, b"RIFF", "WAV"),
    (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (4, b"ftyp", "MP4/M4A"),
    (0, b"\x30\x26\xb2\x75", "ASF/WMA"),
)


def _unopenable_reason(path: Path) -> str:
    """Say why FFmpeg found no format, since its own "Invalid data" helps nobody."""
    with path.open("rb") as fh:
        head = fh.read(512)
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return (
                f"starts like {kind} but no audio could be read from it "
                f"({path.stat().st_size} bytes; it is probably cut short or damaged)"
            )
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return "starts like MP3/AAC but no audio could be read from it (cut short or damaged?)"
    if _looks_like_text(head):
        return "is a text file, not audio (was it renamed?)"
    return "not an audio or video file in any format FFmpeg knows (was it renamed?)"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the 512-byte boundary.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)


def _reason(err: Exception) -> str:
    strerror = getattr(err, "strerror", None)
    return str(strerror or err)


def _audio_stream(container: Any, path: Path) -> Any:
    streams = container.streams.audio
    if not streams:
        raise BadInput(f"{path}: has no audio track")
    return streams[0]


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    if container.duration is not None and container.duration > 0:
        return float(Fraction(container.duration, av.time_base))
    return None


def _stream_start(stream: Any) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _decode_head(container: Any, stream: Any, path: Path) -> float | None:
    """Decode the first second; return where the packets read so far end (stream time)."""
    decoded = 0.0
    end: float | None = None
    try:
        for packet in container.demux(stream):
            end = _later(end, _packet_end(packet))
            for frame in packet.decode():
                decoded += frame.samples / (frame.sample_rate or 1)
            if decoded >= _HEAD_DECODE_S:
                break
    except av.error.FFmpegError as err:
        raise BadInput(f"{path}: the audio data cannot be decoded ({_reason(err)})") from None
    return end


def _packet_end(packet: Any) -> float | None:
    if packet.pts is None or packet.time_base is None:
        return None
    return float((packet.pts + (packet.duration or 0)) * packet.time_base)


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _packet_ends(packets: Iterator[Any]) -> float | None:
    end: float | None = None
    for packet in packets:
        end = _later(end, _packet_end(packet))
    return end


def _real_end(
    container: Any, stream: Any, declared: float | None, head_end: float | None
) -> float | None:
    """Seconds from the stream's start to its last packet's end; None if packets carry no time."""
    start = _stream_start(stream)
    end: float | None = None
    if declared is not None and declared > 2 * _TAIL_S:
        try:
            origin = container.start_time or 0
            target = origin + int((declared - _TAIL_S) * av.time_base)
            container.seek(target, backward=True, any_frame=False)
            end = _packet_ends(container.demux(stream))
        except av.error.FFmpegError:
            end = None
    if end is None:
        # No seek (short or unknown length) or the seek found nothing: read it all.
        try:
            container.seek(container.start_time or 0, backward=True, any_frame=False)
            end = _packet_ends(container.demux(stream))
        except av.error.FFmpegError:
            end = None
    end = _later(end, head_end)
    return None if end is None else end - start


def _decoded_seconds(path: Path) -> float:
    """Decode everything; for containers whose packets carry no timestamps."""
    container = _open(path)
    try:
        stream = _audio_stream(container, path)
        total = 0.0
        try:
            for frame in container.decode(stream):
                total += frame.samples / (frame.sample_rate or 1)
        except av.error.FFmpegError as err:
            raise BadInput(
                f"{path}: the audio data cannot be decoded after {total:.1f} s ({_reason(err)})"
            ) from None
        return total
    finally:
        container.close()
