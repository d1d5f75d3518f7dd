"""Subtitle cues laid out from word timings, as the ``whisper`` CLI's writers do.

``--max-line-width``, ``--max-line-count`` and ``--highlight-words`` follow
``whisper.utils.SubtitlesWriter.iterate_result``: words fill a line while they
fit; a cue ends at a segment's end (unless both width and count are given, then
after ``max_line_count`` lines or a pause over 3 s); highlighting repeats a cue
once per word with that word underlined (``<u>word</u>``), filling gaps between
words with the plain cue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vramscribe.transcript import Transcript

Stamp = Callable[[float], str]
LONG_PAUSE_S = 3.0
UNLIMITED_WIDTH = 1000


@dataclass(slots=True)
class _Timing:
    word: str
    start: float
    end: float


def has_words(transcript: Transcript) -> bool:
    return bool(transcript.segments) and all(s.words is not None for s in transcript.segments)


def _subtitles(transcript: Transcript, width: int | None, count: int | None
               ) -> Iterator[list[_Timing]]:  # fmt: skip
    preserve_segments = count is None or width is None
    max_width = width or UNLIMITED_WIDTH
    line_len, line_count = 0, 1
    subtitle: list[_Timing] = []
    words = [w for s in transcript.segments for w in (s.words or ())]
    last = words[0].start if words else 0.0
    for segment in transcript.segments:
        for i, w in enumerate(segment.words or ()):
            timing = _Timing(w.word, w.start, w.end)
            long_pause = not preserve_segments and timing.start - last > LONG_PAUSE_S
            has_room = line_len + len(timing.word) <= max_width
            seg_break = i == 0 and len(subtitle) > 0 and preserve_segments
            if line_len > 0 and has_room and not long_pause and not seg_break:
                line_len += len(timing.word)
            else:
                timing.word = timing.word.strip()
                if (subtitle and count is not None and (long_pause or line_count >= count)) or (
                    seg_break
                ):
                    yield subtitle
                    subtitle, line_count = [], 1
                elif line_len > 0:
                    line_count += 1
                    timing.word = "\n" + timing.word
                line_len = len(timing.word.strip())
            subtitle.append(timing)
            last = timing.start
    if subtitle:
        yield subtitle


def _underlined(words: list[str], index: int) -> str:
    word = words[index]
    stripped = word.lstrip()
    marked = f"{word[: len(word) - len(stripped)]}<u>{stripped}</u>"
    return "".join(marked if j == index else w for j, w in enumerate(words))


def word_cues(transcript: Transcript, layout: Mapping[str, Any], stamp: Stamp
              ) -> list[tuple[str, str, str]]:  # fmt: skip
    """Cues (start, end, text), times already formatted by ``stamp``."""
    cues: list[tuple[str, str, str]] = []
    width, count = layout.get("max_line_width"), layout.get("max_line_count")
    for subtitle in _subtitles(transcript, width, count):
        start, end = stamp(subtitle[0].start), stamp(subtitle[-1].end)
        words = [t.word.replace("-->", "->") for t in subtitle]
        text = "".join(words)
        if not layout.get("highlight_words"):
            cues.append((start, end, text))
            continue
        last = start
        for i, timing in enumerate(subtitle):
            w_start, w_end = stamp(timing.start), stamp(timing.end)
            if last != w_start:
                cues.append((last, w_start, text))
            cues.append((w_start, w_end, _underlined(words, i)))
            last = w_end
    return cues
