"""One owner per job: a scheduler's lock, its leases, and the heartbeat that keeps them.

A scheduling service takes the scheduler lock of its store (one per host and
store; on SQLite one per store), then recovers what its node's earlier run
left (``Leases.recover``: only jobs whose lease lapsed; only this node's
orphaned workers are ended), and from then on, on the runner's thread, once per
``heartbeat_s``: renews its leases, drops the jobs whose lease it lost, returns
to the queue the running jobs of nodes whose leases lapsed, and claims pending
jobs nobody holds. Every state change it writes carries its holder token, so
once its lease is gone it can no longer complete the job.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from vramscribe.cluster.node import SchedulerLock, node_id, scheduler_lock_path
from vramscribe.runtime.events import RunnerEvent, Tick
from vramscribe.runtime.persist import end_orphan
from vramscribe.runtime.task import Task
from vramscribe.store.leases import Holder, Leases
from vramscribe.submit.run import Run

log = logging.getLogger("vramscribe.cluster")

HEARTBEAT_S = 1.0
"""How often a scheduler renews its leases and claims new jobs."""
CLAIM_S = 0.2
"""How often a scheduler looks for new pending jobs (one indexed query)."""
QUEUE_DEPTH = 1000
"""Pending jobs a scheduler keeps claimed; more are claimed as these start."""


class Ownership:
    """The leases of one scheduling run; see the module."""

    def __init__(
        self,
        run: Run,
        data_dir: Path,
        store_url: str | None,
        *,
        address: str | None = None,
        lease_s: float = 30.0,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        node = node_id(data_dir)
        self.lock = SchedulerLock.acquire(
            scheduler_lock_path(data_dir, store_url), node=node, address=address
        )
        self.run = run
        self.holder = Holder(node, uuid.uuid4().hex, lease_s)
        self.leases = Leases(run.store, self.holder)
        self.heartbeat_s = heartbeat_s
        self.orphans_ended: list[int] = []
        self._last = self._claimed = float("-inf")
        run.persister.holder = self.holder.token
        run.persister.on_lost = self._lost
        run.leases = self.leases
        run.runner.accepts = self._accepts

    @property
    def node_id(self) -> str:
        return self.holder.node_id

    def start(self) -> list[str]:
        """Recover this node's earlier run, claim the queue, start the heartbeat; ids moved."""
        now = self.run.runner.clock()
        recovered = self.leases.recover(now, own_node_dead=True)
        self.orphans_ended = [pid for pid in recovered.own_pids if end_orphan(pid)]
        self._claim(now)
        self._last = now
        self.run.runner.listeners.append(self._on_event)
        return recovered.moved

    def stop(self) -> None:
        """Give the leases back (others may take the jobs at once) and the lock."""
        try:
            self.leases.release_all()
        finally:
            self.lock.release()

    # -- on the runner's thread ---------------------------------------------------------
    def _on_event(self, event: RunnerEvent) -> None:
        if not isinstance(event, Tick):
            return
        now = self.run.runner.clock()
        if now - self._last >= self.heartbeat_s:
            self._last = self._claimed = now
            self.beat(now)
        elif now - self._claimed >= CLAIM_S:
            self._claimed = now
            self._claim(now)

    def beat(self, now: float) -> None:
        runner = self.run.runner
        held = self.leases.renew(now)
        for job_id, task in list(runner.tasks.items()):
            if not task.job.state.is_final and job_id not in held:
                runner.drop(job_id, "its lease is held elsewhere now")
        self.leases.recover(now, own_node_dead=False)
        self._claim(now)

    def _claim(self, now: float) -> None:
        runner = self.run.runner
        for record in self.leases.claim(now, QUEUE_DEPTH - len(runner.queue)):
            known = runner.tasks.get(record.id)
            if known is not None and not known.job.state.is_final:
                continue
            self.run.resume(record)

    def _accepts(self, task: Task) -> bool:
        return self.leases.holds(task.job.id)

    def _lost(self, job_id: str) -> None:
        """A change was refused: the job is someone else's, or ended in the store. Let go of
        any lease we still have on it, so that a job left unfinished is recovered."""
        runner = self.run.runner
        self.leases.release(job_id)
        runner.call_soon(lambda: runner.drop(job_id, "its lease is held elsewhere now"))
