"""Erasing finished jobs: what ``DELETE /v1/jobs/{id}?purge=true`` and ``--retain-days`` do.

With ``--retain-days`` a sweeper thread erases, every so often (an hour, or
sooner for short retentions), the jobs that finished longer ago than that.

A purge removes the job's uploaded audio, its transcripts and its record, so the
job is gone (404) afterwards. Only files the service itself wrote are removed:
audio named by server-side path belongs to its owner and is never touched.
"""

from __future__ import annotations

import logging
import threading
import time
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


log = logging.getLogger(__name__)
SWEEP_S = 3600.0


class Sweeper:
    """Erases finished jobs older than the retention, on its own thread."""

    def __init__(self, service: SchedulerService, retain_s: float) -> None:
        self.service = service
        self.retain_s = retain_s
        self.interval_s = min(SWEEP_S, retain_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sweep(self, now: float) -> int:
        """Erase what is due at ``now``; how many jobs were erased."""
        erased = 0
        while batch := self.service.store.finished_before(now - self.retain_s):
            for rec in batch:
                purge(self.service, rec)
            erased += len(batch)
        return erased

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep(time.time())
            except Exception:  # a bad sweep must not end retention for good
                log.exception("retention sweep failed")
            self._stop.wait(self.interval_s)
