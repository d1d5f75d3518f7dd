"""Messages printed exactly as written.

rich reads ``[...]`` in a printed string as markup and ``:name:`` as an emoji
code, so a file called ``talk[draft].mp3`` or the hint
``pip install 'vramscribe[models]'`` would lose text on its way to the user.
Everything the commands print that carries data (file names, hints, reasons,
errors) goes through this module: styles apply to whole messages or labels and
are never parsed out of the text.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text

__all__ = ["cell", "error", "literal", "say", "stderr_console", "warn"]


def stderr_console() -> Console:
    """The console for messages and live views: stderr, lines left to the terminal to wrap."""
    return Console(stderr=True, soft_wrap=True)


def say(text: str, console: Console | None = None, style: str = "") -> None:
    """Print ``text`` verbatim on one line (stderr unless ``console`` says otherwise)."""
    (console or stderr_console()).print(Text(text, style=style), soft_wrap=True)


def error(text: str, console: Console | None = None, label: str = "error") -> None:
    """Print ``label: text`` with the label in red and ``text`` verbatim."""
    _labelled(label, "red", text, console)


def warn(text: str, console: Console | None = None, label: str = "warning") -> None:
    """Print ``label: text`` with the label in yellow and ``text`` verbatim."""
    _labelled(label, "yellow", text, console)


def cell(text: str) -> Text:
    """A table cell or other renderable that shows ``text`` verbatim."""
    return Text(text)


def literal(text: str) -> str:
    """``text`` escaped for the rich APIs that only take markup strings (progress labels)."""
    return escape(text)


def _labelled(label: str, style: str, text: str, console: Console | None) -> None:
    line = Text.assemble((f"{label}:", style), " ", text)
    (console or stderr_console()).print(line, soft_wrap=True)
