"""README.zh-CN.md says what README.md says: the same commands, options, code and sections.

Everything compared is taken from README.md as it is, so a command, an option
or a table row added there fails this test until the Chinese README has it too.
Prose is free to be translated; what a reader would type is not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGLISH = ROOT / "README.md"
CHINESE = ROOT / "README.zh-CN.md"

COMMANDS = ("vramscribe", "make", "pip", "curl", "python")
"""A code line starting with one of these is a command, compared whole."""

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_COMMENT = re.compile(r"\s+#.*$|^#.*$")


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """Each fenced block in order: its language and its lines, what a reader would type.

    Comments are translated, so they are dropped; in a block that is not code
    (a folder listing), only the first word of each line (the path) is kept.
    """
    blocks = []
    for lang, body in _FENCE.findall(text):
        lines = []
        for raw in body.splitlines():
            line = _COMMENT.sub("", raw).rstrip()
            if not line.strip():
                continue
            is_code = lang == "python" or line.split()[0] in COMMANDS
            lines.append(line if is_code else line.split()[0])
        blocks.append((lang, lines))
    return blocks


def commands(text: str) -> list[str]:
    """Every ``vramscribe COMMAND`` in code blocks, in order of first appearance."""
    found: list[str] = []
    for _, lines in code_blocks(text):
        for line in lines:
            for part in line.split(";"):
                words = part.split()
                if len(words) > 1 and words[0] == "vramscribe" and words[1] not in found:
                    found.append(words[1])
    return found


def options(text: str) -> set[str]:
    """Every ``--option`` named anywhere: in commands, in prose, in tables."""
    return set(_OPTION.findall(text))


def table_keys(text: str) -> list[str]:
    """The first cell of every table row (an option, a field, a command), in order."""
    keys = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|?$", line):
            keys.append(line.split("|")[1].strip().strip("`"))
    return keys


def headings(text: str) -> list[int]:
    """The level of each heading outside code blocks, in order."""
    outside = _FENCE.sub("", text)
    return [len(m.group(1)) for m in re.finditer(r"^(#+) ", outside, re.M)]


def links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", text)


@pytest.fixture(scope="module")
def texts() -> tuple[str, str]:
    return ENGLISH.read_text(), CHINESE.read_text()


def test_the_same_commands_and_code(texts: tuple[str, str]) -> None:
    english, chinese = texts
    assert commands(english), "no commands found in README.md: has its layout changed?"
    assert commands(chinese) == commands(english)
    assert code_blocks(chinese) == code_blocks(english)


def test_the_same_options(texts: tuple[str, str]) -> None:
    english, chinese = texts
    assert "--allowed-root" in options(english)
    missing, extra = options(english) - options(chinese), options(chinese) - options(english)
    assert (missing, extra) == (set(), set()), "README.zh-CN.md must follow README.md"


def test_the_same_tables_and_sections(texts: tuple[str, str]) -> None:
    english, chinese = texts
    assert table_keys(chinese) == table_keys(english)
    assert headings(chinese) == headings(english)


def test_each_links_the_other_first(texts: tuple[str, str]) -> None:
    english, chinese = texts
    assert links(english)[0] == "README.zh-CN.md"
    assert links(chinese)[0] == "README.md"
    assert [link for link in links(chinese) if link != "README.md"] == [
        link for link in links(english) if link != "README.zh-CN.md"
    ]


def test_the_comparison_sees_a_difference() -> None:
    base = "# t\n\n```\nvramscribe serve --token X   # a comment\n```\n\n| `--a` | b |\n|---|---|\n"
    translated = base.replace("a comment", "注释").replace("| b |", "| 乙 |")
    assert code_blocks(translated) == code_blocks(base)
    assert table_keys(translated) == table_keys(base) == ["--a"]
    assert commands(base) == ["serve"] and options(base) == {"--token", "--a"}
    changed = base.replace("--token X", "--token X --port 1")
    assert code_blocks(changed) != code_blocks(base) and options(changed) != options(base)
    assert table_keys(base + "| `--c` | d |\n") != table_keys(base)
