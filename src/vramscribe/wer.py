"""Word error rate, for checking transcripts against references in tests and benchmarks.

Implemented here rather than imported so that quality checks work in a plain
install, and normalised the same way everywhere so numbers are comparable.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_APOSTROPHES = "'\u2019\u02bc"


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and collapse whitespace.

    Apostrophes are removed without a space ("don't" -> "dont") so contractions
    stay one word; other punctuation becomes a space so "well-known" and "well
    known" compare equal. Casing and punctuation are style, not recognition.
    """
    out = []
    for char in text.lower():
        if char in _APOSTROPHES:
            continue
        category = unicodedata.category(char)
        out.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(out).split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Fewest substitutions, insertions and deletions turning ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str, *, normalised: bool = True) -> float:
    """Word edits needed per reference word, after :func:`normalise` unless ``normalised=False``.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise,
    rather than dividing by zero.
    """
    if normalised:
        reference, hypothesis = normalise(reference), normalise(hypothesis)
    ref_words, hyp_words = reference.split(), hypothesis.split()
    if not ref_words:
        return 0.0 if not hyp_words else 1.0
    return edit_distance(ref_words, hyp_words) / len(ref_words)
