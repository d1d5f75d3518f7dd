"""The result of one transcription, independent of the engine that produced it.

Workers send transcripts back to the scheduler process and write them to disk,
so they are plain frozen values that round-trip through JSON without loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "word": self.word,
            "probability": self.probability,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Word:
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            word=str(data["word"]),
            probability=float(data["probability"]),
        )


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] | None = None
    speaker: str | None = None
    """Who speaks (the channel's label when channels were transcribed apart)."""

    def to_dict(self) -> dict[str, Any]:
        # Word timings are opt-in and large; leaving the key out (rather than
        # writing null) keeps files small and tells readers none were asked for.
        out: dict[str, Any] = {"start": self.start, "end": self.end, "text": self.text}
        if self.words is not None:
            out["words"] = [w.to_dict() for w in self.words]
        if self.speaker is not None:
            out["speaker"] = self.speaker
        return out

    @property
    def labelled_text(self) -> str:
        """The text with its speaker in front, as whisperX writes it: ``[agent]: Hello``."""
        text = self.text.strip()
        return text if self.speaker is None else f"[{self.speaker}]: {text}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        raw_words = data.get("words")
        words = None if raw_words is None else tuple(Word.from_dict(w) for w in raw_words)
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["text"]),
            words=words,
            speaker=None if data.get("speaker") is None else str(data["speaker"]),
        )


@dataclass(frozen=True, slots=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: str
    duration_s: float
    model: str
    # Seconds spent per phase (load, decode, transcribe, ...); kept for benchmarks.
    timings: dict[str, float] = field(default_factory=dict)
    # What the finishing attempt ran with (device, compute type, batch size), how many
    # attempts it took and where it resumed; filled in by the runner, empty from engines.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole transcript as one line, for plain-text output and WER checks."""
        return " ".join(t for t in (s.text.strip() for s in self.segments) if t)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "language": self.language,
            "duration_s": self.duration_s,
            "model": self.model,
            "timings": dict(self.timings),
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.settings:
            out["settings"] = dict(self.settings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transcript:
        """Read back ``to_dict`` output, ignoring extra keys such as the json file's ``text``."""
        return cls(
            segments=tuple(Segment.from_dict(s) for s in data["segments"]),
            language=str(data["language"]),
            duration_s=float(data["duration_s"]),
            model=str(data["model"]),
            timings={str(k): float(v) for k, v in data.get("timings", {}).items()},
            settings=dict(data.get("settings", {})),
        )
