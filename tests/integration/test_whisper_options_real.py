"""The options Whisper users know, with the real models on real speech, on the CPU."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.cli import reference_text, transcribe_on_cpu
from tests.conftest import SPEECH_AUDIO
from vramscribe.audio import SAMPLE_RATE, decode_samples
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow

JFK_TEXT = reference_text("jfk.flac")
GERMAN_START_S = 30.0
"""multilingual.mp3 is read in English, then in German from about 30 s."""


def write_pcm(path: Path, samples: np.ndarray) -> Path:
    """16-bit WAV; ``samples`` is (n,) for mono or (n, channels)."""
    data = np.clip(samples, -1, 1)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((data * 32767).astype("<i2").tobytes())
    return path


def words(text: str) -> list[str]:
    return re.findall(r"[a-zäöüß']+", text.lower())


def test_translate_turns_the_german_half_into_english(tmp_path: Path) -> None:
    samples = decode_samples(SPEECH_AUDIO / "multilingual.mp3")
    german = write_pcm(tmp_path / "german.wav", samples[int(GERMAN_START_S * SAMPLE_RATE) :])
    heard = transcribe_on_cpu(
        str(german), "--model", "base", "-o", str(tmp_path / "de"), "-f", "json"
    )
    assert heard.returncode == 0, heard.stderr
    original = json.loads((tmp_path / "de" / "german.json").read_text())
    assert original["language"] == "de"
    assert {"der", "die", "und"} & set(words(original["text"]))  # it is German as heard

    result = transcribe_on_cpu(
        str(german), "--model", "base", "--task", "translate",
        "-o", str(tmp_path / "en"), "-f", "txt",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    english = set(words((tmp_path / "en" / "german.txt").read_text()))
    assert "software" in english
    assert len(english & {"copies", "distribute", "documentation", "modify", "sell", "use"}) >= 2
    assert not english & {"der", "die", "und", "ist"}


def subtitle_lines(text: str) -> list[str]:
    """The text lines of an srt or vtt file (no numbers, times or header)."""
    skip = re.compile(r"^(\d+|WEBVTT|.*-->.*)?$")
    return [line for line in text.splitlines() if not skip.fullmatch(line)]


def test_tsv_line_width_and_highlighted_words_follow_the_whisper_writers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = transcribe_on_cpu(
        str(SPEECH_AUDIO / "jfk.flac"), "--output_dir", str(out), "--output_format", "all",
        "--max-line-width", "42", "--max_line_count", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = (out / "jfk.tsv").read_text().splitlines()
    assert rows[0] == "start\tend\ttext"
    cells = [row.split("\t") for row in rows[1:]]
    assert cells and all(len(c) == 3 and c[0].isdigit() and c[1].isdigit() for c in cells)
    assert all(int(c[0]) <= int(c[1]) <= 11_100 for c in cells)
    assert word_error_rate(JFK_TEXT, " ".join(c[2] for c in cells)) <= 0.05
    for fmt in ("srt", "vtt"):
        lines = subtitle_lines((out / f"jfk.{fmt}").read_text())
        assert lines and max(len(line) for line in lines) <= 42
        assert word_error_rate(JFK_TEXT, " ".join(lines)) <= 0.05
    cues = (out / "jfk.srt").read_text().strip().split("\n\n")
    assert max(len(cue.splitlines()) - 2 for cue in cues) == 2  # --max-line-count 2 lines

    lit = transcribe_on_cpu(
        str(SPEECH_AUDIO / "jfk.flac"), "-o", str(tmp_path / "lit"), "-f", "srt", "-f", "json",
        "--highlight_words", "True",
    )  # fmt: skip
    assert lit.returncode == 0, lit.stderr
    spoken = [
        w["word"].strip()
        for s in json.loads((tmp_path / "lit" / "jfk.json").read_text())["segments"]
        for w in s["words"]
    ]
    cues = (tmp_path / "lit" / "jfk.srt").read_text().strip().split("\n\n")
    underlined = [re.findall(r"<u>(.*?)</u>", cue, re.S) for cue in cues]
    assert all(len(u) <= 1 for u in underlined)
    assert [u[0] for u in underlined if u] == spoken  # each word in turn, in order
