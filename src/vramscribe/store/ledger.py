"""The output ledger: which input each output file was written from, and kept transcripts.

A part of :class:`~vramscribe.store.store.Store` (``store.ledger``), in its own
module because it is about files on disk rather than job lifecycles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from vramscribe.naming import InputStamp, path_key
from vramscribe.store.schema import KeptTranscriptRow, OutputRecordRow, table_of

SessionFactory = Callable[[], AbstractContextManager[Session]]
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class KeptTranscript:
    """A transcript whose outputs could not be written: where it is, and why."""

    job_id: str
    input: InputStamp
    options: dict[str, Any]
    result_path: Path
    reason: str


class OutputLedger:
    def __init__(self, read: SessionFactory, write: SessionFactory) -> None:
        self._read = read
        self._write = write

    def record(self, outputs: Iterable[Path | str], source: InputStamp, job_id: str | None,
               now: float) -> None:  # fmt: skip
        """``outputs`` were just written from ``source`` (earlier records of them are replaced)."""
        keys = sorted({path_key(p) for p in outputs})
        rows = [
            {"output_path": k, "input_path": source.path, "input_size": source.size,
             "input_mtime": source.mtime, "job_id": job_id, "written_at": now}
            for k in keys
        ]  # fmt: skip
        with self._write() as session:
            session.execute(delete(OutputRecordRow).where(OutputRecordRow.output_path.in_(keys)))
            if rows:  # column values, not mapped rows: every finished job writes these
                session.execute(insert(table_of(OutputRecordRow)), rows)

    def sources(self, outputs: Iterable[Path | str]) -> dict[str, InputStamp]:
        """The recorded input of each of ``outputs`` that has a record, by :func:`path_key`."""
        keys = sorted({path_key(p) for p in outputs})
        found: dict[str, InputStamp] = {}
        row = OutputRecordRow
        columns = (row.output_path, row.input_path, row.input_size, row.input_mtime)
        with self._read() as session:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                # Columns, not mapped rows: every submission asks, and nothing is changed.
                for output, path, size, mtime in session.execute(
                    select(*columns).where(row.output_path.in_(chunk))
                ):
                    found[output] = InputStamp(path, size, mtime)
        return found

    def keep(self, kept: KeptTranscript, now: float) -> None:
        with self._write() as session:
            session.merge(
                KeptTranscriptRow(
                    job_id=kept.job_id,
                    input_path=kept.input.path,
                    input_size=kept.input.size,
                    input_mtime=kept.input.mtime,
                    options=kept.options,
                    result_path=str(kept.result_path),
                    reason=kept.reason,
                    kept_at=now,
                )
            )

    def kept_for(self, source: InputStamp, matches: Callable[[Mapping[str, Any]], bool]
                 ) -> KeptTranscript | None:  # fmt: skip
        """The newest kept transcript of ``source`` as it is now whose options ``matches``
        accepts and whose file still exists."""
        query = (
            select(KeptTranscriptRow)
            .where(KeptTranscriptRow.input_path == source.path)
            .order_by(KeptTranscriptRow.kept_at.desc())
        )
        with self._read() as session:
            for row in session.scalars(query):
                stamp = InputStamp(row.input_path, row.input_size, row.input_mtime)
                result = Path(row.result_path)
                if stamp == source and matches(row.options) and result.is_file():
                    return KeptTranscript(row.job_id, stamp, row.options, result, row.reason)
        return None

    def forget(self, job_id: str) -> None:
        """A kept transcript whose outputs are now written is no longer needed."""
        with self._write() as session:
            session.execute(delete(KeptTranscriptRow).where(KeptTranscriptRow.job_id == job_id))
