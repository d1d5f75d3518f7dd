"""The Whisper options: one table read by the CLI, the service's fields and JobRequest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vramscribe.cli.transcribe import batch_request, transcribe
from vramscribe.cli.whisper_options import rewrite_bools
from vramscribe.core.footprints import FootprintBook
from vramscribe.core.profiles import decoding_extra_mb
from vramscribe.core.room import estimate
from vramscribe.decoding import OPTIONS, engine_kwargs, read_fields
from vramscribe.errors import InvalidRequest
from vramscribe.outputs import render
from vramscribe.service.schemas import JobByPath
from vramscribe.submit.build import ModelChoice, build_job
from vramscribe.submit.request import JobRequest
from vramscribe.transcript import Segment, Transcript, Word


def cli_request(*args: str) -> JobRequest:
    """The batch request ``vramscribe transcribe`` builds from ``args`` (nothing runs)."""
    ctx = transcribe.make_context("transcribe", ["in.wav", *args])
    return batch_request(ctx.params)


def test_cli_accepts_dash_underscore_and_earlier_spellings() -> None:
    a = cli_request("--best-of", "3", "--logprob-threshold", "-0.5", "--vad_onset", "0.4",
                    "--output-format", "tsv", "--output_dir", "out", "--vad-filter")  # fmt: skip
    b = cli_request("--best_of", "3", "--log_prob_threshold", "-0.5", "--vad-threshold", "0.4",
                    "--format", "tsv", "--out-dir", "out", "--vad")  # fmt: skip
    assert a.decoding == b.decoding == {
        "best_of": 3, "log_prob_threshold": -0.5, "vad_threshold": 0.4,
    }  # fmt: skip
    assert a.formats == b.formats == ("tsv",) and a.vad_filter and b.vad_filter


def test_booleans_take_flags_and_true_false_values() -> None:
    assert rewrite_bools(["--highlight_words", "True", "x.wav"]) == ["--highlight-words", "x.wav"]
    assert rewrite_bools(["--condition_on_previous_text=False"]) == [
        "--no-condition-on-previous-text"
    ]
    assert rewrite_bools(["--vad", "false", "--word_timestamps", "yes"]) == [
        "--no-vad-filter", "--word-timestamps",
    ]  # fmt: skip
    assert rewrite_bools(["--language", "True"]) == ["--language", "True"]  # not a boolean
    on = cli_request("--condition_on_previous_text", "False", "--highlight-words")
    off = cli_request("--no-condition-on-previous-text", "--highlight_words", "True")
    assert on.decoding == off.decoding == {"condition_on_previous_text": False}
    assert on.layout == off.layout == {"highlight_words": True}


def test_format_all_asks_for_every_format() -> None:
    assert cli_request("-f", "all").formats == ("txt", "srt", "vtt", "tsv", "json")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"task": "summarise"}, "task must be transcribe or translate"),
        ({"temperature": "1.5"}, "temperature must be a number 0-1"),
        ({"best_of": "0"}, "best_of must be a whole number of at least 1"),
        ({"patience": "0"}, "patience must be a number above 0"),
        ({"no_speech_threshold": "2"}, "no_speech_threshold must be a number at least 0"),
        ({"logprob_threshold": "0.5"}, "log_prob_threshold must be a number at most 0"),
        ({"suppress_tokens": "1,a"}, "suppress_tokens must be comma-separated token ids"),
        ({"vad_onset": "1.2"}, "vad_threshold must be a number at least 0 and at most 1"),
        ({"max_line_width": "0"}, "max_line_width must be a whole number of at least 1"),
        ({"highlight_words": "maybe"}, "highlight_words must be True or False"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(values: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequest, match=words) as caught:
        read_fields(values)
    assert caught.value.field in {o.key for o in OPTIONS}


def test_two_spellings_of_one_option_must_agree() -> None:
    assert read_fields({"logprob_threshold": "-1", "log_prob_threshold": "-1.0"})[0] == {
        "log_prob_threshold": -1.0
    }
    with pytest.raises(InvalidRequest, match="log_prob_threshold is given twice"):
        read_fields({"logprob_threshold": "-1", "log_prob_threshold": "-2"})


def test_cli_names_the_option_at_fault() -> None:
    import click

    with pytest.raises(click.BadParameter) as caught:
        cli_request("--best_of", "0")
    assert caught.value.param_hint == "--best-of"


def test_service_fields_and_the_python_api_read_the_same_options() -> None:
    body = JobByPath.model_validate(
        {"path": "/a.wav", "task": "translate", "logprob_threshold": -0.7, "vad_onset": 0.3,
         "max_line_width": 42, "highlight_words": "true", "temperature": [0.0, 0.5]}
    )  # fmt: skip
    req = JobRequest.parse(body.options(), input=Path("/a.wav"), model="base")
    assert req.decoding == {
        "task": "translate", "log_prob_threshold": -0.7, "vad_threshold": 0.3,
        "temperature": [0.0, 0.5],
    }  # fmt: skip
    assert req.layout == {"max_line_width": 42, "highlight_words": True}
    with pytest.raises(InvalidRequest, match="unknown decoding option 'beam'"):
        JobRequest(input=Path("/a.wav"), decoding={"beam": 3})
    with pytest.raises(InvalidRequest, match="translate needs a multilingual model"):
        JobRequest(input=Path("/a.wav"), model="tiny.en", decoding={"task": "translate"})


def test_engine_gets_the_values_unchanged_and_vad_as_its_parameters() -> None:
    kwargs = engine_kwargs(
        {"best_of": 3, "patience": 1.5, "suppress_tokens": [-1, 50],
         "vad_threshold": 0.4, "vad_speech_pad_ms": 200, "temperature": [0.0, 0.4]}
    )  # fmt: skip
    assert kwargs == {
        "best_of": 3, "patience": 1.5, "suppress_tokens": [-1, 50], "temperature": [0.0, 0.4],
        "vad_parameters": {"threshold": 0.4, "speech_pad_ms": 200},
    }  # fmt: skip
    # One temperature falls back in steps, as the whisper CLI does.
    assert engine_kwargs({"temperature": 0.4})["temperature"] == [0.4, 0.6, 0.8, 1.0]
    assert engine_kwargs({"temperature": 0.4, "temperature_increment_on_fallback": None}) == {
        "temperature": [0.4]
    }


def test_layout_turns_word_timings_on_and_wider_beams_raise_the_estimate() -> None:
    model = ModelChoice("large-v3", "large-v3")
    plain = build_job(JobRequest(input=Path("/a.wav"), model="large-v3"), model,
                      cpu_threads=1, now=0.0)  # fmt: skip
    assert plain.task.job.decode_extra_mb == 0.0 and not plain.task.engine.word_timestamps
    wide = build_job(
        JobRequest(input=Path("/a.wav"), model="large-v3", beam_size=10,
                   decoding={"best_of": 12}, layout={"max_line_width": 42}),
        model, cpu_threads=1, now=0.0,
    )  # fmt: skip
    assert wide.task.engine.word_timestamps and wide.task.engine.layout == {"max_line_width": 42}
    assert wide.task.job.decode_extra_mb == decoding_extra_mb("large-v3", 12) > 0
    assert decoding_extra_mb("large-v3", 20) > decoding_extra_mb("large-v3", 12)
    book = FootprintBook()
    more = estimate(wide.task.job, book, "cuda", 1) - estimate(plain.task.job, book, "cuda", 1)
    assert more == pytest.approx(wide.task.job.decode_extra_mb)  # what the planner admits by


def _transcript() -> Transcript:
    def seg(start: float, text: str, *ws: tuple[float, float, str]) -> Segment:
        return Segment(start, ws[-1][1], text, tuple(Word(a, b, w, 0.9) for a, b, w in ws))

    return Transcript(
        (
            seg(0.0, " Ask not what", (0.0, 0.5, " Ask"), (0.5, 0.9, " not"), (0.9, 1.2, " what")),
            seg(1.5, " your country\tcan", (1.5, 1.8, " your"), (1.8, 2.4, " country")),
        ),
        "en", 2.4, "tiny.en",
    )  # fmt: skip


def test_tsv_is_the_whisper_layout() -> None:
    assert render(_transcript(), "tsv") == (
        "start\tend\ttext\n0\t1200\tAsk not what\n1500\t2400\tyour country can\n"
    )


def test_line_width_and_highlighting_lay_out_cues_as_whisper_does() -> None:
    narrow = render(_transcript(), "srt", {"max_line_width": 8})
    assert narrow == (
        "1\n00:00:00,000 --> 00:00:01,200\nAsk not\nwhat\n\n"
        "2\n00:00:01,500 --> 00:00:02,400\nyour\ncountry\n"
    )
    lit = render(_transcript(), "vtt", {"highlight_words": True})
    assert lit.split("\n\n")[1:4] == [
        "00:00:00.000 --> 00:00:00.500\n<u>Ask</u> not what",
        "00:00:00.500 --> 00:00:00.900\nAsk <u>not</u> what",
        "00:00:00.900 --> 00:00:01.200\nAsk not <u>what</u>",
    ]
    # A gap between words is filled with the plain cue.
    assert "00:00:01.200 --> 00:00:01.500" not in lit
    assert render(_transcript(), "srt") == render(_transcript(), "srt", {})


def test_the_submit_client_takes_the_same_options() -> None:
    from vramscribe.cli.remote import submit

    ctx = submit.make_context(
        "submit", [__file__, "--best_of", "3", "--highlight_words", "True", "--split-channels"]
    )
    assert ctx.params["best_of"] == "3" and ctx.params["highlight_words"] is True
    assert ctx.params["split_channels"] is True
