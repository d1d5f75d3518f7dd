"""A batch's inputs against what earlier runs left: outputs done, transcripts kept, names.

Before a batch starts, every input gets its output paths by the rule of
:mod:`vramscribe.naming` (inputs that would share an output get distinct names,
said once in the log); inputs whose outputs the ledger says are done are
skipped; inputs with a transcript kept by an earlier run whose outputs could not
be written get their outputs from it, without transcribing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.naming import InputStamp, Naming, distinct_path, is_done, name_outputs, stamp
from vramscribe.outputs import output_path
from vramscribe.runtime.ledger import matcher
from vramscribe.runtime.outcome import write_outputs
from vramscribe.store.ledger import OutputLedger


@dataclass(slots=True)
class Sorted:
    """What the batch does with each input."""

    naming: Naming
    todo: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: int = 0
    rewritten: int = 0
    errors: list[str] = field(default_factory=list)


def _candidates(files: list[tuple[Path, Path]], formats: tuple[str, ...], out_dir: Path | None
                ) -> list[Path]:  # fmt: skip
    paths = []
    for file, root in files:
        for fmt in formats:
            plain = output_path(file, root, fmt, out_dir)
            paths += [plain, distinct_path(plain, file)]
    return paths


def sort_inputs(
    files: list[tuple[Path, Path]],
    formats: tuple[str, ...],
    out_dir: Path | None,
    ledger: OutputLedger,
    *,
    overwrite: bool,
    engine: dict[str, Any],
    now: float,
) -> Sorted:
    """Name every input's outputs, then skip, rewrite from a kept transcript, or queue it."""
    records = ledger.sources(_candidates(files, formats, out_dir))
    result = Sorted(name_outputs(files, formats, out_dir, records))
    for file, root in files:
        outputs = result.naming.outputs[file]
        source = stamp(file)
        if overwrite or source is None:
            result.todo.append((file, root))
        elif is_done(file, outputs, records):
            result.skipped += 1
        elif not _from_kept(file, source, outputs, ledger, engine, now, result):
            result.todo.append((file, root))
    return result


def _from_kept(
    file: Path,
    source: InputStamp,
    outputs: tuple[tuple[str, Path], ...],
    ledger: OutputLedger,
    engine: dict[str, Any],
    now: float,
    result: Sorted,
) -> bool:
    """Write ``file``'s outputs from a kept transcript; False when there is none."""
    kept = ledger.kept_for(source, matcher(engine))
    if kept is None:
        return False
    problem = write_outputs(kept.result_path, list(outputs), engine.get("layout"))
    if problem is not None:
        result.errors.append(
            f"{file}: {problem}; the transcript is still kept at {kept.result_path}"
        )
        return True
    ledger.record([p for _, p in outputs], source, kept.job_id, now)
    ledger.forget(kept.job_id)
    result.rewritten += 1
    return True
