"""Which output paths each input gets, and when an existing output counts as done.

One rule, used by a CLI batch (for all its inputs at once) and by
:meth:`vramscribe.submit.run.Run.submit` (for every new job, the service's and
the Python API's too), so no two inputs ever write the same file:

- an input keeps the plain names (``talk.mp3`` -> ``talk.txt``) unless another
  input would write the same path; then its outputs keep the input's extension
  (``talk.mp3.txt``, ``talk.flac.txt``);
- an existing output keeps its name when the store's record of it names the
  same input, so adding ``talk.mp3`` next to an already transcribed
  ``talk.flac`` does not rename ``talk.txt``;
- an output counts as done only when the record says it was written from this
  input at its current size and modification time: an output of another input,
  or of an older version of the file, is never taken for done.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vramscribe.outputs import output_path

Outputs = tuple[tuple[str, Path], ...]


@dataclass(frozen=True, slots=True)
class InputStamp:
    """An input file as it was when its outputs were written."""

    path: str
    """Absolute, resolved path."""
    size: int
    mtime: float


def path_key(path: Path | str) -> str:
    """The one spelling of a path that records are keyed by: the path resolved.

    Resolving asks the filesystem about every component of the path. The folders
    are few and their answers are kept; the names are many (a service names every
    job's outputs after the job) and cost one ``lstat`` each: a name that is not a
    link resolves to itself in its resolved folder.
    """
    text = os.fspath(path)
    text = text if os.path.isabs(text) else os.path.join(os.getcwd(), text)
    folder, name = os.path.split(text)
    if name in ("", ".", "..") or os.path.islink(text):
        return _resolved(text)
    return os.path.join(_resolved(folder), name)


@functools.lru_cache(maxsize=65536)
def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def stamp(path: Path | str) -> InputStamp | None:
    """The input as it is now; None when it cannot be read (gone, no permission)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return InputStamp(path_key(path), st.st_size, st.st_mtime)


def distinct_path(path: Path, input_file: Path) -> Path:
    """``path`` renamed to keep the input's extension: ``out/talk.txt`` -> ``out/talk.mp3.txt``."""
    return path.with_name(f"{Path(input_file).name}{path.suffix}")


def _owner(key: str, records: Mapping[str, InputStamp]) -> str | None:
    """The input an existing output was written from, if that input still exists."""
    rec = records.get(key)
    if rec is None or not os.path.exists(rec.path):
        return None
    return rec.path


def keeps_plain_names(
    input_file: Path,
    plain: Outputs,
    records: Mapping[str, InputStamp],
    shared: Iterable[str] = (),
) -> bool:
    """Whether ``input_file`` may write ``plain``: nobody else writes or owns those paths,
    or the records say every one of them is already this input's."""
    me = path_key(input_file)
    keys = [path_key(p) for _, p in plain]
    owners = [_owner(k, records) for k in keys]
    contested = set(shared) & set(keys)
    if not contested and all(o in (None, me) for o in owners):
        return True
    return all(o == me for o in owners)


@dataclass(slots=True)
class Naming:
    """The outputs of every input of a batch, and the inputs given distinct names."""

    outputs: dict[Path, Outputs] = field(default_factory=dict)
    renamed: list[Path] = field(default_factory=list)

    def message(self) -> str | None:
        """One log line about the renamed inputs (None when there are none)."""
        if not self.renamed:
            return None
        first = self.renamed[0]
        example = ", ".join(p.name for _, p in self.outputs[first][:1])
        return (
            f"{len(self.renamed)} input(s) share a name with another input; their outputs keep "
            f"the input's extension (e.g. {example}) so none overwrites another"
        )


def name_outputs(
    files: Sequence[tuple[Path, Path]],
    formats: Sequence[str],
    out_dir: Path | None,
    records: Mapping[str, InputStamp],
) -> Naming:
    """Output paths for every ``(file, root)`` of a batch, by the module's rule."""
    plain = {
        file: tuple((fmt, output_path(file, root, fmt, out_dir)) for fmt in formats)
        for file, root in files
    }
    users: dict[str, set[str]] = defaultdict(set)
    for file, outs in plain.items():
        for _, p in outs:
            users[path_key(p)].add(path_key(file))
    shared = [k for k, who in users.items() if len(who) > 1]
    naming = Naming()
    for file, outs in plain.items():
        if keeps_plain_names(file, outs, records, shared):
            naming.outputs[file] = outs
        else:
            naming.outputs[file] = tuple((fmt, distinct_path(p, file)) for fmt, p in outs)
            naming.renamed.append(file)
    return naming


def claim(
    input_file: Path,
    outputs: Outputs,
    records: Mapping[str, InputStamp],
    claimed: Mapping[str, str],
) -> Outputs:
    """``outputs`` for one new job, renamed if another input writes or owns one of them.

    ``claimed`` maps output paths of jobs not yet finished to their inputs.
    """
    me = path_key(input_file)
    shared = [path_key(p) for _, p in outputs if claimed.get(path_key(p), me) != me]
    if keeps_plain_names(input_file, outputs, records, shared):
        return outputs
    return tuple((fmt, distinct_path(p, input_file)) for fmt, p in outputs)


def is_done(input_file: Path, outputs: Outputs, records: Mapping[str, InputStamp]) -> bool:
    """Every output exists and was written from this input as it is now."""
    now = stamp(input_file)
    if now is None or not outputs:
        return False
    return all(p.is_file() and records.get(path_key(p)) == now for _, p in outputs)


class Claims(Mapping[str, str]):
    """Output paths of the jobs not yet finished, by :func:`path_key`, with their input.

    Kept up to date as jobs are queued and end, so that a submission looks up
    its own outputs instead of resolving every queued job's paths again: on a
    service with thousands of queued jobs that scan made each submission cost
    tens of milliseconds. Thread-safe: submissions come from request threads,
    the ends from the scheduler's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inputs: dict[str, str] = {}
        self._of_job: dict[str, list[str]] = {}

    def add(self, job_id: str, input_file: Path, outputs: Iterable[tuple[str, Path]]) -> None:
        keys = [path_key(p) for _, p in outputs]
        me = path_key(input_file)
        with self._lock:
            self._of_job[job_id] = keys
            for key in keys:
                self._inputs[key] = me

    def drop(self, job_id: str) -> None:
        with self._lock:
            for key in self._of_job.pop(job_id, ()):
                self._inputs.pop(key, None)

    def __getitem__(self, key: str) -> str:
        with self._lock:
            return self._inputs[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._inputs))

    def __len__(self) -> int:
        return len(self._inputs)


__all__ = [
    "Claims",
    "InputStamp",
    "Naming",
    "claim",
    "distinct_path",
    "is_done",
    "keeps_plain_names",
    "name_outputs",
    "path_key",
    "stamp",
]
