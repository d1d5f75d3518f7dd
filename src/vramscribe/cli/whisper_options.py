"""The Whisper options on the command line, under the ``whisper``/``whisperx`` CLIs' names.

Every option of :data:`vramscribe.decoding.OPTIONS` becomes a click option with
its dash spelling first and the underscore spellings as aliases. Booleans take
both ``--x/--no-x`` and, as in those CLIs, ``--x True`` or ``--x False``
(:class:`WhisperCommand` rewrites the second form into the first before click
parses). Values are read and checked by :func:`vramscribe.decoding.read_fields`,
the same code the service uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from vramscribe.decoding import FALSE_WORDS, OPTIONS, TRUE_WORDS, Option, read_fields

F = TypeVar("F", bound=Callable[..., Any])

EXISTING_BOOLS = {
    "--vad-filter": ("--vad_filter", "--vad"),
    "--word-timestamps": ("--word_timestamps",),
    "--split-channels": ("--split_channels",),
}
"""Boolean options declared in the command itself: primary spelling -> aliases."""


def negative(spelling: str) -> str:
    sep = "_" if "_" in spelling else "-"
    return f"--no{sep}{spelling[2:]}"


def bool_spellings() -> dict[str, tuple[str, str]]:
    """Every spelling of a boolean option -> (its on flag, its off flag)."""
    table: dict[str, tuple[str, str]] = {}
    groups = [(o.cli, o.spellings) for o in OPTIONS if o.is_bool]
    groups += [(p, (p, *a)) for p, a in EXISTING_BOOLS.items()]
    for primary, spellings in groups:
        for spelling in spellings:
            table[spelling] = (primary, negative(primary))
    return table


def rewrite_bools(args: Sequence[str]) -> list[str]:
    """``--x True``/``--x=false`` -> ``--x``/``--no-x``; everything else as it is."""
    table = bool_spellings()
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        word = value.strip().lower() if value is not None else None
        if name in table and word in TRUE_WORDS + FALSE_WORDS:
            on, off = table[name]
            out.append(on if word in TRUE_WORDS else off)
            i += 1 if eq else 2
            continue
        out.append(arg)
        i += 1
    return out


class WhisperCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_bools(args))


def _click_option(opt: Option) -> Callable[[F], F]:
    if opt.is_bool:
        decls = [f"{s}/{negative(s)}" for s in opt.spellings]
        return click.option(*decls, opt.key, default=None, help=opt.help + " [True|False]")
    return click.option(*opt.spellings, opt.key, default=None, help=opt.help, metavar=opt.metavar)


def whisper_options(fn: F) -> F:
    """Add every option of :data:`~vramscribe.decoding.OPTIONS` to a command."""
    for opt in reversed(OPTIONS):
        fn = _click_option(opt)(fn)
    return fn


def whisper_values(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The decoding and layout options given on the command line, checked."""
    return read_fields({o.key: opts.get(o.key) for o in OPTIONS})


def option_hint(key: str) -> str | None:
    """The option to name in an error about the request field ``key``."""
    return next((o.cli for o in OPTIONS if o.key == key), None)
