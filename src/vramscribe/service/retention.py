"""Erasing finished jobs: what ``DELETE /v1/jobs/{id}?purge=true`` and ``--retain-days`` do.

A purge removes the job's uploaded audio, its transcripts and its record, so the
job is gone (404) afterwards. Only files the service itself wrote are removed:
audio named by server-side path belongs to its owner and is never touched.
"""

from __future__ import annotations

from pathlib import Path

from vramscribe.service.scheduler import SchedulerService
from vramscribe.store.records import JobRecord


def purge(service: SchedulerService, rec: JobRecord) -> list[Path]:
    """Erase a finished job's files and record; returns the files removed."""
    owned = [Path(rec.input_path), *(Path(path) for _, path in rec.outputs)]
    removed = []
    for path in owned:
        if _inside(path, (service.uploads, service.transcripts)) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    service.store.delete(rec.id)
    return removed


def _inside(path: Path, folders: tuple[Path, ...]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(folder.resolve()) for folder in folders)
