import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from vramscribe.outputs import (
    FORMATS,
    JSON_SCHEMA,
    SCHEMA_ID,
    load_json,
    missing_outputs,
    output_path,
    render,
    write_atomic,
)
from vramscribe.transcript import Segment, Transcript, Word

TRANSCRIPT = Transcript(
    segments=(
        Segment(0.0, 2.5, " Ask not what your country can do for you,"),
        Segment(
            2.5,
            4.75,
            " ask what you can do",
            words=(
                Word(2.5, 2.9, " ask", 0.98),
                Word(2.9, 3.3, " what", 0.95),
                Word(3.3, 3.6, " you", 0.99),
                Word(3.6, 4.0, " can", 0.97),
                Word(4.0, 4.75, " do", 0.91),
            ),
        ),
        Segment(3725.0426, 3727.5, " for your country."),
    ),
    language="en",
    duration_s=3728.0,
    model="tiny.en",
    timings={"load_s": 0.65, "transcribe_s": 1.2},
)

SRT_TIME = r"\d{2,}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"\d{2,}:\d{2}:\d{2}\.\d{3}"


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def _cue_times(text: str, pattern: str) -> list[tuple[float, float]]:
    arrows = re.findall(rf"^({pattern}) --> ({pattern})$", text, flags=re.MULTILINE)
    return [(_seconds(a), _seconds(b)) for a, b in arrows]


def _validate(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The part of JSON Schema that JSON_SCHEMA uses, checked by hand."""
    errors: list[str] = []
    kinds: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "number": (int, float),
        "integer": int,
        "boolean": bool,
    }
    kind = schema.get("type")
    if kind is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, kinds[kind]) or (is_bool and kind != "boolean"):
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: expected {schema['const']!r}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: above {schema['maximum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing {key}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += _validate(item, properties[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected {key}")
            elif isinstance(extra, dict):
                errors += _validate(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _validate(item, schema["items"], f"{where}[{i}]")
    return errors


def test_srt_numbers_cues_and_formats_monotonic_timestamps() -> None:
    srt = render(TRANSCRIPT, "srt")
    blocks = srt.strip("\n").split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["1", "2", "3"]
    assert all(re.fullmatch(rf"{SRT_TIME} --> {SRT_TIME}", b.splitlines()[1]) for b in blocks)
    times = _cue_times(srt, SRT_TIME)
    assert times == [(0.0, 2.5), (2.5, 4.75), (3725.043, 3727.5)]
    assert all(start <= end for start, end in times)
    assert [s for s, _ in times] == sorted(s for s, _ in times)
    assert blocks[2].splitlines()[1] == "01:02:05,043 --> 01:02:07,500"
    assert blocks[0].splitlines()[2] == "Ask not what your country can do for you,"


def test_vtt_has_header_and_dotted_timestamps() -> None:
    vtt = render(TRANSCRIPT, "vtt")
    assert vtt.startswith("WEBVTT\n\n")
    times = _cue_times(vtt, VTT_TIME)
    assert times == [(0.0, 2.5), (2.5, 4.75), (3725.043, 3727.5)]
    assert "01:02:05.043 --> 01:02:07.500\nfor your country.\n" in vtt
    assert "," not in "".join(re.findall(VTT_TIME, vtt))


def test_txt_is_one_stripped_line_per_segment() -> None:
    assert render(TRANSCRIPT, "txt") == (
        "Ask not what your country can do for you,\nask what you can do\nfor your country.\n"
    )


def test_json_validates_against_schema_and_round_trips() -> None:
    doc = json.loads(render(TRANSCRIPT, "json"))
    assert _validate(doc, JSON_SCHEMA) == []
    assert doc["schema"] == SCHEMA_ID
    assert doc["text"] == TRANSCRIPT.text
    assert doc["text"] == (
        "Ask not what your country can do for you, ask what you can do for your country."
    )
    assert ["words" in s for s in doc["segments"]] == [False, True, False]
    assert load_json(render(TRANSCRIPT, "json")) == TRANSCRIPT


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.pop("text"), "missing text"),
        (lambda d: d.update(schema="other/1"), "$.schema: expected"),
        (lambda d: d["segments"][0].update(start=-1), "below 0"),
        (lambda d: d["segments"][1]["words"][0].update(probability=1.5), "above 1"),
        (lambda d: d["segments"][0].update(mood="calm"), "unexpected mood"),
        (lambda d: d["segments"][0].update(speaker=3), "expected string"),
        (lambda d: d["timings"].update(load_s="fast"), "expected number"),
    ],
)
def test_schema_check_catches_malformed_documents(mutate: Any, problem: str) -> None:
    doc = json.loads(render(TRANSCRIPT, "json"))
    mutate(doc)
    assert any(problem in e for e in _validate(doc, JSON_SCHEMA))


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.5, "00:00:01,500", "00:00:01.500"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (61.0014, "00:01:01,001", "00:01:01.001"),
        (3600.0, "01:00:00,000", "01:00:00.000"),
        (36000 * 10 + 0.25, "100:00:00,250", "100:00:00.250"),
        (-0.2, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps_round_to_milliseconds(seconds: float, srt: str, vtt: str) -> None:
    one = Transcript((Segment(seconds, seconds, "x"),), "en", 1.0, "tiny", {})
    assert render(one, "srt").splitlines()[1] == f"{srt} --> {srt}"
    assert render(one, "vtt").splitlines()[2] == f"{vtt} --> {vtt}"


def test_subtitles_skip_empty_segments_and_keep_cue_text_on_one_line() -> None:
    transcript = Transcript(
        segments=(
            Segment(0.0, 1.0, "first\n\nline"),
            Segment(1.0, 2.0, "   "),
            Segment(2.0, 1.5, "a --> b"),
        ),
        language="en",
        duration_s=2.0,
        model="tiny",
        timings={},
    )
    srt = render(transcript, "srt")
    assert srt == (
        "1\n00:00:00,000 --> 00:00:01,000\nfirst line\n\n2\n00:00:02,000 --> 00:00:02,000\na -> b\n"
    )
    assert "-->" not in render(transcript, "vtt").split("\n", 3)[3].replace(" --> ", "")


def test_every_format_renders_and_unknown_format_is_refused() -> None:
    assert all(render(TRANSCRIPT, fmt) for fmt in FORMATS)
    with pytest.raises(ValueError, match="unknown output format 'docx'"):
        render(TRANSCRIPT, "docx")


def test_write_atomic_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "talk.srt"
    write_atomic(target, "old\n")
    write_atomic(target, "new ünïcode\n")
    assert target.read_text(encoding="utf-8") == "new ünïcode\n"
    assert os.listdir(target.parent) == ["talk.srt"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomic_failure_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "talk.txt"
    write_atomic(target, "complete\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "half written \ud800 never finished")
    assert target.read_text(encoding="utf-8") == "complete\n"
    assert os.listdir(tmp_path) == ["talk.txt"]


@pytest.mark.parametrize(
    ("input_file", "root", "fmt", "out_dir", "expected"),
    [
        ("in/talk.mp3", "in", "srt", None, "in/talk.srt"),
        ("in/a/b/talk.mp3", "in", "json", None, "in/a/b/talk.json"),
        ("in/talk.final.wav", "in", "vtt", None, "in/talk.final.vtt"),
        ("in/a/b/talk.mp3", "in", "srt", "out", "out/a/b/talk.srt"),
        ("in/talk.mp3", "in", "txt", "out", "out/talk.txt"),
        ("elsewhere/talk.mp3", "in", "txt", "out", "out/talk.txt"),
        ("in/notes.txt", "in", "txt", None, "in/notes.txt.txt"),
        ("in/noext", "in", "srt", None, "in/noext.srt"),
    ],
)
def test_output_path(
    tmp_path: Path, input_file: str, root: str, fmt: str, out_dir: str | None, expected: str
) -> None:
    out = None if out_dir is None else tmp_path / out_dir
    got = output_path(tmp_path / input_file, tmp_path / root, fmt, out)
    assert got == tmp_path / expected


def test_missing_outputs_lists_what_a_rerun_must_still_write(tmp_path: Path) -> None:
    audio = tmp_path / "in" / "sub" / "talk.mp3"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"not read")
    out = tmp_path / "out"
    formats = ["txt", "srt", "json"]
    assert missing_outputs(audio, tmp_path / "in", formats, out) == formats
    write_atomic(out / "sub" / "talk.srt", "x")
    assert missing_outputs(audio, tmp_path / "in", formats, out) == ["txt", "json"]
    for fmt in ("txt", "json"):
        write_atomic(output_path(audio, tmp_path / "in", fmt, out), "x")
    assert missing_outputs(audio, tmp_path / "in", formats, out) == []
    # Outputs next to the input are a separate set.
    assert missing_outputs(audio, tmp_path / "in", formats) == formats
