"""The options Whisper users know, under the names the ``whisper`` and ``whisperx`` CLIs use.

One table (:data:`OPTIONS`) says, for each option, the key it is stored under
(faster-whisper's keyword), every spelling accepted (dashes first, then the
underscore spellings of the two CLIs and earlier names), how a value is read and
checked, and its help. The CLI's options, the service's form and JSON fields and
:class:`~vramscribe.submit.request.JobRequest` all read from here, so they accept
the same names and refuse the same values with the same messages.

Decoding and VAD options are passed to faster-whisper unchanged
(:func:`engine_kwargs`); layout options shape subtitles when outputs are written
(:mod:`vramscribe.subtitles`). Nothing here touches the disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vramscribe.errors import InvalidRequest

TASKS = ("transcribe", "translate")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
WHISPER_TEMPERATURE_INCREMENT = 0.2
"""The ``whisper`` CLI's default ``--temperature_increment_on_fallback``."""

Parser = Callable[[object, str], Any]


@dataclass(frozen=True, slots=True)
class Option:
    key: str
    """Where the value is kept (``decoding``/``layout``) and faster-whisper's keyword."""
    group: str
    """``decoding`` (passed to faster-whisper), ``vad`` (its ``vad_parameters``) or ``layout``."""
    parse: Parser
    help: str
    whisper: str = ""
    """The ``whisper`` CLI's spelling ("" when it has none)."""
    whisperx: str = ""
    """The ``whisperx`` CLI's spelling ("" when it has none)."""
    flag: str = ""
    """The CLI's primary spelling; default: the key with dashes."""
    aliases: tuple[str, ...] = ()
    """Further accepted spellings (besides the underscore form of each)."""
    is_bool: bool = False
    metavar: str = "NUMBER"
    """What the CLI's help shows for the value."""

    @property
    def cli(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every CLI spelling, primary first, each also with underscores."""
        names = [self.cli, *self.aliases, self.whisper, self.whisperx]
        out: list[str] = []
        for name in names:
            for spelling in (name.replace("_", "-"), name.replace("-", "_").replace("__", "--")):
                if spelling and spelling not in out:
                    out.append(spelling)
        return tuple(out)

    @property
    def fields(self) -> tuple[str, ...]:
        """The service field names: the key and every spelling in underscore form."""
        names = [self.key, *(s.lstrip("-").replace("-", "_") for s in self.spellings)]
        return tuple(dict.fromkeys(names))


# -- readers --------------------------------------------------------------------------
def _bad(name: str, what: str, value: object) -> InvalidRequest:
    return InvalidRequest(f"{name} must be {what}, got {value!r}", name)


def read_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise _bad(name, "True or False", value)


def _number(value: object, name: str, what: str) -> float:
    if isinstance(value, bool):
        raise _bad(name, what, value)
    try:
        number = float(value) if isinstance(value, int | float | str) else math.nan
    except ValueError:
        raise _bad(name, what, value) from None
    if not math.isfinite(number):
        raise _bad(name, what, value)
    return number


def real(lo: float | None = None, hi: float | None = None, *, above: bool = False,
         optional: bool = False) -> Parser:  # fmt: skip
    """A number in a range; ``optional``: ``None`` (the word or the value) turns the check off."""
    low = "" if lo is None else (f"above {lo:g}" if above else f"at least {lo:g}")
    what = " and ".join(p for p in (low, "" if hi is None else f"at most {hi:g}") if p)
    what = f"a number {what}".strip() + (" (or None)" if optional else "")

    def parse(value: object, name: str) -> float | None:
        if optional and (value is None or str(value).strip().lower() == "none"):
            return None
        x = _number(value, name, what)
        if (lo is not None and (x <= lo if above else x < lo)) or (hi is not None and x > hi):
            raise _bad(name, what, value)
        return x

    return parse


def whole(lo: int, hi: int | None = None) -> Parser:
    what = f"a whole number of at least {lo}" + ("" if hi is None else f" and at most {hi}")

    def parse(value: object, name: str) -> int:
        x = _number(value, name, what)
        if not x.is_integer() or x < lo or (hi is not None and x > hi):
            raise _bad(name, what, value)
        return int(x)

    return parse


def read_task(value: object, name: str) -> str:
    text = str(value).strip().lower()
    if text not in TASKS:
        raise _bad(name, "transcribe or translate", value)
    return text


def read_temperature(value: object, name: str) -> float | list[float]:
    """One temperature (with fallback increments, as ``whisper`` does) or a comma list."""
    what = "a number 0-1, or a comma-separated list of them"
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    temps = [_number(p, name, what) for p in parts]
    if not temps or any(not 0 <= t <= 1 for t in temps):
        raise _bad(name, what, value)
    return temps[0] if len(temps) == 1 else temps


def read_tokens(value: object, name: str) -> list[int]:
    """Comma-separated token ids; ``-1`` is Whisper's default set, ``none`` suppresses none."""
    what = "comma-separated token ids (-1: the default set), or none"
    if isinstance(value, list | tuple):
        parts = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.lower() in ("none", ""):
            return []
        parts = text.split(",")
    try:
        tokens = [int(p) for p in parts]
    except ValueError:
        raise _bad(name, what, value) from None
    if any(t < -1 for t in tokens):
        raise _bad(name, what, value)
    return tokens


def _flag(value: object, name: str) -> bool:
    return read_bool(value, name)


OPTIONS: tuple[Option, ...] = (
    Option("task", "decoding", read_task, "transcribe (X->X) or translate (X->English).",
           "--task", "--task", metavar="[transcribe|translate]"),
    Option("temperature", "decoding", read_temperature,
           "Sampling temperature; with fallback it rises by the increment when decoding fails. "
           "A comma list gives the temperatures to try.", "--temperature", "--temperature",
           metavar="T[,T...]"),
    Option("temperature_increment_on_fallback", "decoding",
           real(0, 1, above=True, optional=True),
           "Temperature increase on each fallback (None: no fallback).",
           "--temperature_increment_on_fallback", "--temperature_increment_on_fallback"),
    Option("best_of", "decoding", whole(1, 20),
           "Candidates when sampling with a non-zero temperature.", "--best_of", "--best_of"),
    Option("patience", "decoding", real(0, above=True),
           "Beam search patience (1.0: conventional beam search).", "--patience", "--patience"),
    Option("length_penalty", "decoding", real(0),
           "Token length penalty (alpha); 1: simple length normalisation.",
           "--length_penalty", "--length_penalty"),
    Option("condition_on_previous_text", "decoding", _flag,
           "Prompt each window with the previous output (off: less prone to loops).",
           "--condition_on_previous_text", "--condition_on_previous_text", is_bool=True),
    Option("compression_ratio_threshold", "decoding", real(0, above=True, optional=True),
           "Treat decoding as failed above this gzip compression ratio.",
           "--compression_ratio_threshold", "--compression_ratio_threshold"),
    Option("log_prob_threshold", "decoding", real(hi=0, optional=True),
           "Treat decoding as failed below this average log probability.",
           "--logprob_threshold", "--logprob_threshold", flag="--logprob-threshold",
           aliases=("--log-prob-threshold",)),
    Option("no_speech_threshold", "decoding", real(0, 1, optional=True),
           "Call a window silence above this no-speech probability (with a failed log prob).",
           "--no_speech_threshold", "--no_speech_threshold"),
    Option("suppress_tokens", "decoding", read_tokens,
           "Token ids to suppress, comma-separated (-1: most special characters).",
           "--suppress_tokens", "--suppress_tokens", metavar="IDS"),
    Option("vad_threshold", "vad", real(0, 1), "VAD speech probability threshold.",
           whisperx="--vad_onset"),
    Option("vad_neg_threshold", "vad", real(0, 1), "VAD silence threshold (end of speech).",
           whisperx="--vad_offset"),
    Option("vad_min_speech_duration_ms", "vad", whole(0),
           "VAD: drop speech chunks shorter than this."),
    Option("vad_max_speech_duration_s", "vad", real(0, above=True),
           "VAD: split speech chunks longer than this.", whisperx="--chunk_size"),
    Option("vad_min_silence_duration_ms", "vad", whole(0),
           "VAD: silence needed to end a speech chunk."),
    Option("vad_speech_pad_ms", "vad", whole(0), "VAD: padding added to each speech chunk."),
    Option("max_line_width", "layout", whole(1),
           "Subtitles: most characters per line (word timings are turned on).",
           "--max_line_width", "--max_line_width"),
    Option("max_line_count", "layout", whole(1),
           "Subtitles: most lines per cue (with --max-line-width).",
           "--max_line_count", "--max_line_count"),
    Option("highlight_words", "layout", _flag,
           "Subtitles: underline each word as it is spoken (word timings are turned on).",
           "--highlight_words", "--highlight_words", is_bool=True),
)  # fmt: skip

BY_FIELD: dict[str, Option] = {name: opt for opt in OPTIONS for name in opt.fields}
"""Every accepted service field name (and key) -> its option."""
LAYOUT_KEYS = tuple(o.key for o in OPTIONS if o.group == "layout")


def read_fields(values: Mapping[str, object]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoding (with VAD) and layout options among loosely typed ``values``.

    Values that are None or empty are not given; two spellings of one option
    that disagree are refused.
    """
    decoding: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    for name, raw in values.items():
        opt = BY_FIELD.get(name)
        if opt is None or raw is None or raw == "":
            continue
        value = opt.parse(raw, opt.key)
        target = layout if opt.group == "layout" else decoding
        if opt.key in target and target[opt.key] != value:
            raise InvalidRequest(f"{opt.key} is given twice with different values", opt.key)
        target[opt.key] = value
    return decoding, layout


def check(decoding: Mapping[str, Any], layout: Mapping[str, Any]) -> None:
    """Refuse unknown keys and out-of-range values (a request built in Python)."""
    for group, values in (("decoding", decoding), ("layout", layout)):
        for key, value in values.items():
            opt = BY_FIELD.get(key)
            if opt is None or opt.key != key or (opt.group == "layout") != (group == "layout"):
                raise InvalidRequest(f"unknown {group} option {key!r}", group)
            if value is not None or not _optional(opt):
                opt.parse(value, key)


def _optional(opt: Option) -> bool:
    try:
        opt.parse(None, opt.key)
    except InvalidRequest:
        return False
    return True


def engine_kwargs(decoding: Mapping[str, Any]) -> dict[str, Any]:
    """faster-whisper keywords for ``decoding``: the values unchanged, the VAD options
    gathered into ``vad_parameters``, one temperature widened with fallback steps as the
    ``whisper`` CLI does."""
    kwargs: dict[str, Any] = {}
    vad: dict[str, Any] = {}
    for key, value in decoding.items():
        if key.startswith("vad_"):
            vad[key.removeprefix("vad_")] = value
        elif key != "temperature_increment_on_fallback":
            kwargs[key] = value
    if vad:
        kwargs["vad_parameters"] = vad
    increment = decoding.get("temperature_increment_on_fallback", WHISPER_TEMPERATURE_INCREMENT)
    start = kwargs.get(
        "temperature", 0.0 if "temperature_increment_on_fallback" in decoding else None
    )
    if isinstance(start, int | float):
        if increment is None:
            kwargs["temperature"] = [start]
        else:
            steps = int((1.0 + 1e-6 - start) / increment)
            kwargs["temperature"] = [round(start + i * increment, 6) for i in range(steps + 1)]
    return kwargs


def beams(beam_size: int, decoding: Mapping[str, Any]) -> int:
    """How many hypotheses decoding keeps at once: what its memory grows with."""
    return max(beam_size, int(decoding.get("best_of", 5)))


def needs_words(layout: Mapping[str, Any]) -> bool:
    """Whether the subtitles asked for need word timings."""
    return bool(
        layout.get("highlight_words")
        or layout.get("max_line_width")
        or layout.get("max_line_count")
    )


__all__ = [
    "BY_FIELD",
    "LAYOUT_KEYS",
    "OPTIONS",
    "TASKS",
    "Option",
    "beams",
    "check",
    "engine_kwargs",
    "needs_words",
    "read_bool",
    "read_fields",
]
