"""The head of a Ray cluster: the store, the global queue, and the planner for each node.

The head creates one :class:`~vramscribe.cluster.ray_agent.NodeAgent` per Ray
node that has devices (a node labelled ``vramscribe.device=SPEC``, or one with
GPUs, which gets ``auto``), pinned to that node with node-affinity scheduling,
as nodes join. Dispatch is pull: each step polls every agent for its snapshot;
the head applies the node's job changes (writing them to the store with that
node's lease token, and the outputs of a finished job itself, atomically),
then runs the same pure planner for that node over the global queue and
leases the chosen jobs to it. Audio goes as a path when it lies under
``shared_path`` (storage every node mounts), else as bytes through Ray's
object store. A node whose agent dies or stops answering gives its jobs back to
the queue, with a history entry naming the node; a result it sends later is
refused by the store, since its lease is gone.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.cluster.ray_agent import NodeReport, agent_actor
from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import JobState, fail
from vramscribe.core.planner import plan
from vramscribe.core.queue import PendingQueue
from vramscribe.core.settings import Settings
from vramscribe.errors import VramscribeError
from vramscribe.runtime.events import JobChanged, RunnerEvent, publish
from vramscribe.runtime.outcome import write_outputs
from vramscribe.runtime.persist import StorePersister, task_from_record
from vramscribe.runtime.task import Task
from vramscribe.store.leases import Holder, Leases
from vramscribe.store.store import Store

log = logging.getLogger("vramscribe.cluster")
DEVICE_LABEL = "vramscribe.device"
DISCOVER_S = 2.0
POLL_S = 0.2
NODES_WAIT_S = 60.0
ANSWER_S = 20.0
"""An agent that does not answer a poll for this long is lost."""


@dataclass(slots=True, eq=False)
class NodeLink:
    """One node as the head knows it: its agent, its leases, its persister."""

    node_id: str
    device: str
    agent: Any
    leases: Leases
    persister: StorePersister
    ready: bool = False
    devices: list[dict[str, Any]] = field(default_factory=list)


class RayHead:
    """Runs stored jobs on the nodes of a Ray cluster; see the module."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        work_dir: Path,
        *,
        address: str | None = "auto",
        shared_path: Path | None = None,
        lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.store = store
        self.settings = settings
        self.work_dir = work_dir
        self.shared_path = shared_path.resolve() if shared_path else None
        self.lease_s = lease_s
        self.clock = clock
        self.token = uuid.uuid4().hex[:12]
        self.book: FootprintBook = store.load_footprints()
        self.queue = PendingQueue(settings.aging_s_per_point)
        self.tasks: dict[str, Task] = {}
        self.where: dict[str, str] = {}
        self.nodes: dict[str, NodeLink] = {}
        self.lost: list[str] = []
        self.placements: list[tuple[str, str]] = []
        """(job id, node id) for every job leased to a node, in order."""
        self.listeners: list[Callable[[RunnerEvent], None]] = []
        self._discovered = float("-inf")
        self._rejected: dict[str, dict[str, str]] = {}
        """Pending jobs a node's plan rejected (fits none of its devices), by node: a job
        every live node rejects can never run and fails, as on one machine."""
        self._persister = StorePersister(store)

    # -- jobs ------------------------------------------------------------------------------
    def add(self, task: Task) -> None:
        """Queue a stored pending job (its record must be in the store already)."""
        self.tasks[task.job.id] = task
        if task.job.state is JobState.PENDING:
            self.queue.push(task.job)

    def forget(self, job_id: str) -> None:
        """A job that ended outside the head (cancelled in the store): stop running it."""
        task = self.tasks.pop(job_id, None)
        if task is None:
            return
        if job_id in self.queue:
            self.queue.remove(job_id)
        node = self.where.pop(job_id, None)
        link = self.nodes.get(node) if node else None
        if link is not None:
            link.agent.drop.remote(job_id)
            link.leases.release(job_id)

    def busy(self) -> bool:
        return any(not t.job.state.is_final for t in self.tasks.values())

    def run(self, timeout_s: float = 24 * 3600.0) -> list[Task]:
        """Step until every job is final; the tasks. Raises ``NoNodes`` when no node with
        devices joined within ``NODES_WAIT_S``."""
        began = time.monotonic()
        while self.busy() and time.monotonic() - began < timeout_s:
            self.step()
            if not self.nodes and time.monotonic() - began > NODES_WAIT_S:
                raise NoNodes()
            time.sleep(POLL_S)
        return list(self.tasks.values())

    def close(self) -> None:
        for link in self.nodes.values():
            try:
                import ray

                ray.get(link.agent.shutdown.remote(), timeout=30)
                ray.kill(link.agent)
            except Exception:
                log.info("node %s already gone", link.node_id)

    # -- one step ----------------------------------------------------------------------------
    def step(self) -> None:
        import ray

        now = self.clock()
        if now - self._discovered >= DISCOVER_S:
            self._discovered = now
            self._discover()
        calls = {node: link.agent.poll.remote() for node, link in self.nodes.items()}
        for node, ref in calls.items():
            link = self.nodes[node]
            try:
                report: NodeReport = ray.get(ref, timeout=ANSWER_S if link.ready else 120.0)
            except Exception as exc:
                self._lose(link, f"{type(exc).__name__}")
                continue
            link.ready = True
            link.leases.renew(self.clock())
            self._apply(link, report)
            self._dispatch(link, report)
        self._reject_where_no_node_fits()

    def _reject_where_no_node_fits(self) -> None:
        for job_id, by_node in list(self._rejected.items()):
            task = self.tasks.get(job_id)
            if task is None or job_id not in self.queue:
                del self._rejected[job_id]
            elif self.nodes and set(self.nodes) <= set(by_node):
                del self._rejected[job_id]
                self.queue.remove(job_id)
                why = "; ".join(f"node {n[:8]}: {r}" for n, r in sorted(by_node.items()))
                self._persister.known(job_id, len(task.job.history))
                fail(task.job, self.clock(), f"fits no node of the cluster ({why})")
                self._persister.persist(task)
                self._publish(JobChanged(task))

    def _discover(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        found: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
        for node in found:
            node_id = str(node["NodeID"])
            if node_id in self.nodes:
                if not node.get("Alive", False):
                    self._lose(self.nodes[node_id], "the node left the cluster")
                continue
            if not node.get("Alive", False) or node_id in self.lost:
                continue
            device = node_device(node)
            if device is None:
                continue
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            agent = (
                agent_actor()
                .options(scheduling_strategy=strategy)
                .remote(
                    node_id,
                    device,
                    self.settings,
                    str(Path(tempfile.gettempdir()) / "vramscribe-agent" / node_id[:12]),
                    self.book.to_json(),
                )
            )
            holder = Holder(node_id, f"{self.token}-{node_id[:12]}", self.lease_s)
            persister = StorePersister(self.store)
            persister.holder = holder.token
            self.nodes[node_id] = NodeLink(
                node_id, device, agent, Leases(self.store, holder), persister
            )
            log.info("node %s joined with %s", node_id, device)

    def _apply(self, link: NodeLink, report: NodeReport) -> None:
        link.devices = report.devices
        for update in report.updates:
            job_id = update.job.id
            task = self.tasks.get(job_id)
            if task is None or self.where.get(job_id) != link.node_id:
                continue  # not this node's any more: nothing it says counts
            if update.transcript is not None and not self._finish(link, task, update.transcript):
                continue
            task.job, task.device_id = update.job, update.device_id
            task.worker_pid, task.progress_s = update.worker_pid, update.progress_s
            lost: list[str] = []
            link.persister.on_lost = lost.append
            link.persister.persist(task)
            if lost:
                self.where.pop(job_id, None)
                continue
            self._publish(JobChanged(task))
            if task.job.state.is_final:
                self.where.pop(job_id, None)
        for job_id in report.returned:
            task = self.tasks.get(job_id)
            if task is not None and self.where.get(job_id) == link.node_id:
                self.where.pop(job_id)
                link.leases.release(job_id)
                if task.job.state is JobState.PENDING and job_id not in self.queue:
                    self.queue.push(task.job)

    def _finish(self, link: NodeLink, task: Task, transcript: str) -> bool:
        """Write a finished job's outputs, only while its node holds the lease."""
        if not link.leases.holds(task.job.id):
            log.warning("result of %s from %s discarded: lease lost", task.job.id, link.node_id)
            return False
        result = self.work_dir / "results" / f"{task.job.id}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(transcript)
        problem = write_outputs(result, task.outputs)
        if problem is not None:
            log.error("job %s: %s", task.job.id, problem)
        return True

    def _dispatch(self, link: NodeLink, report: NodeReport) -> None:
        if not report.snapshots or not len(self.queue):
            return
        now = self.clock()
        decisions = plan(now, self.queue, report.snapshots, report.views, self.settings, self.book)
        for start in decisions.starts:
            task = self.tasks[start.job_id]
            self.queue.remove(start.job_id)
            if not link.leases.take(start.job_id, now):
                continue  # another head holds it
            self.where[start.job_id] = link.node_id
            self.placements.append((start.job_id, link.node_id))
            link.persister.known(start.job_id, len(task.job.history))
            audio = None if self._shared(task.input) else task.input.read_bytes()
            link.agent.start.remote(task, start, audio)
        for reject in decisions.rejects:
            self._rejected.setdefault(reject.job_id, {})[link.node_id] = reject.reason
        for job in self.queue:
            task = self.tasks[job.id]
            task.pending_reason = f"{decisions.reason_for(job.id)} (node {link.node_id[:8]})"

    def _lose(self, link: NodeLink, why: str) -> None:
        """A node is gone: its jobs go back to the queue, their histories naming it."""
        import ray

        self.nodes.pop(link.node_id, None)
        self.lost.append(link.node_id)
        reason = f"recovered after node {link.node_id} was lost ({why})"
        log.warning("node %s lost (%s)", link.node_id, why)
        link.leases.give_back(self.clock(), reason)
        for job_id, node in list(self.where.items()):
            if node != link.node_id:
                continue
            self.where.pop(job_id)
            record = self.store.get(job_id)
            if record is None or record.status is not JobState.PENDING:
                continue
            task = task_from_record(record)
            task.outputs = self.tasks[job_id].outputs
            self.tasks[job_id] = task
            self.queue.push(task.job)
            self._publish(JobChanged(task))
        try:
            ray.kill(link.agent)
        except Exception:
            log.debug("agent of %s already dead", link.node_id)

    def _shared(self, path: Path) -> bool:
        return self.shared_path is not None and path.resolve().is_relative_to(self.shared_path)

    def _publish(self, event: RunnerEvent) -> None:
        publish(self.listeners, event)


class RayUnavailable(VramscribeError):
    """Ray is not installed: install the ray extra (pip install 'vramscribe[ray]')."""


def ray_address(value: str) -> str | None:
    """What ``ray.init`` takes for ``--ray``; ``local`` starts a cluster of one here."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RayUnavailable() from None
    return None if value == "local" else value


class NoNodes(VramscribeError):
    """No node of the Ray cluster has devices for vramscribe: start GPU nodes, or label a
    node with its devices (ray start --labels vramscribe.device=cpu)."""


def node_device(node: dict[str, Any]) -> str | None:
    labels = node.get("Labels") or {}
    if DEVICE_LABEL in labels:
        return str(labels[DEVICE_LABEL])
    if float((node.get("Resources") or {}).get("GPU", 0)) > 0:
        return "auto"
    return None
