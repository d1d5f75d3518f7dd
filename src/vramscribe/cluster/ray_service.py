"""The service as the head of a Ray cluster (``vramscribe serve --ray``).

The service keeps its store, API and events; a thread runs the
:class:`~vramscribe.cluster.ray_head.RayHead`: it takes every pending job of
the store into the global queue, steps the head (which polls the node agents,
plans for each node and leases jobs to them), and stops jobs that a client
cancelled in the store.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from vramscribe.cluster.ray_head import POLL_S, RayHead
from vramscribe.runtime.events import RunnerEvent
from vramscribe.runtime.persist import task_from_record
from vramscribe.submit.run import Run

log = logging.getLogger("vramscribe.cluster")
INTAKE_S = 0.5


class RayScheduling:
    """A head on its own thread, fed from the store."""

    def __init__(
        self,
        run: Run,
        address: str | None,
        shared_path: Path | None,
        on_event: Callable[[RunnerEvent], None],
    ) -> None:
        self.run = run
        self.head = RayHead(
            run.store,
            run.settings.scheduler,
            run.runner.run_dir / "ray",
            address=address,
            shared_path=shared_path,
        )
        self.head.listeners.append(on_event)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ray-head", daemon=True)
        self._intake = 0.0

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> list[str]:
        """Requeue what a stopped head left running (its agents died with it), then start."""
        moved, _ = self.run.store.recover(self.head.clock())
        self._thread.start()
        return moved

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.head.close()
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = self.head.clock()
                if now - self._intake >= INTAKE_S:
                    self._intake = now
                    self._take_new()
                    self._drop_ended()
                self.head.step()
            except Exception:
                log.exception("the Ray head's step failed; retrying")
            self._stop.wait(POLL_S)

    def _take_new(self) -> None:
        for record in self.run.store.pending():
            if record.id not in self.head.tasks:
                self.head.add(task_from_record(record))

    def _drop_ended(self) -> None:
        """Jobs a client cancelled in the store: out of the queue, their workers stopped."""
        live = [t for t in self.head.tasks.values() if not t.job.state.is_final]
        for task in live:
            record = self.run.store.get(task.job.id, with_history=False)
            if record is not None and record.status.is_final:
                self.head.forget(task.job.id)
