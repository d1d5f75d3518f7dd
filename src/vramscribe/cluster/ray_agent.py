"""The node agent: the local runtime on one Ray node, planned for by the head.

The agent owns a :class:`~vramscribe.runtime.runner.Runner` on the node's
devices (memory admission on its GPUs, worker processes, release
verification, warm instances), on its own thread. It does not choose jobs:
the head polls it for its snapshot (the policy shell's planner input), runs
the planner for this node over the global queue, and sends the chosen jobs
with their ``Start`` decisions. The runner runs them as if it had planned
them itself. Each poll also carries back every job whose state changed (with
the transcript of a finished one, for the head to write) and the jobs that
went back to waiting here (a retry), which return to the global queue.

The class is plain Python; :func:`agent_actor` wraps it as a Ray actor whose
calls run one at a time in the order the head sent them.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramscribe.core.footprints import FootprintBook
from vramscribe.core.jobs import Job, JobState
from vramscribe.core.planner import Start
from vramscribe.core.settings import Settings
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView
from vramscribe.devices.select import pick_devices
from vramscribe.paths import host_dir, new_run_dir
from vramscribe.runtime.events import JobChanged, RunnerEvent, Tick
from vramscribe.runtime.reservations import LEDGER_FILE, HostLedger, attach, share_reservations
from vramscribe.runtime.runner import Runner
from vramscribe.runtime.task import Task

POLL_TIMEOUT_S = 30.0


@dataclass(slots=True)
class JobUpdate:
    """A job as the node holds it now; ``transcript``: the result JSON once it completed."""

    job: Job
    device_id: str | None
    worker_pid: int | None
    progress_s: float
    transcript: str | None = None


@dataclass(slots=True)
class NodeReport:
    """What one poll of an agent returns."""

    node_id: str
    snapshots: list[DeviceSnapshot] = field(default_factory=list)
    views: list[InstanceView] = field(default_factory=list)
    updates: list[JobUpdate] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)


class NodeAgent:
    """One node's runtime; see the module."""

    def __init__(
        self,
        node_id: str,
        device: str,
        settings: Settings,
        work_dir: str,
        book_json: str = "",
        cpu_threads: int = 1,
    ) -> None:
        self.node_id = node_id
        devices = pick_devices(device, cpu_threads)
        ledger = HostLedger(host_dir() / LEDGER_FILE)
        book = FootprintBook.from_json(book_json) if book_json else FootprintBook()
        self.inputs = Path(work_dir) / "inputs"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.runner = Runner(
            share_reservations(devices, ledger),
            settings,
            book,
            run_dir=new_run_dir(Path(work_dir)),
        )
        attach(self.runner, ledger)
        self.runner.listeners.append(self._on_event)
        self._changed: dict[str, Task] = {}
        self._waiting: list[tuple[list[NodeReport], threading.Event]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.runner.run_until, args=(self._stop,), name="agent", daemon=True
        )
        self._thread.start()

    # -- called by the head ----------------------------------------------------------------
    def poll(self) -> NodeReport:
        """The node as of the end of the runner's next step, so that the jobs sent before
        this poll are in its snapshot: the head never plans twice into the same memory."""
        box: list[NodeReport] = []
        done = threading.Event()
        self.runner.call_soon(lambda: self._waiting.append((box, done)))
        if not done.wait(POLL_TIMEOUT_S) or not box:
            raise TimeoutError("the node's runner did not answer")
        return box[0]

    def start(self, task: Task, start: Start, audio: bytes | None = None) -> None:
        """Run ``task`` as planned; ``audio``: the input's bytes where the node cannot read it."""
        if audio is not None:
            local = self.inputs / f"{task.job.id}{task.input.suffix}"
            local.write_bytes(audio)
            task.input = local
        task.outputs = []  # the head writes outputs

        def begin() -> None:
            self.runner.start_planned(task, start)

        self.runner.call_soon(begin)

    def cancel(self, job_id: str) -> None:
        self.runner.call_soon(lambda: self.runner.cancel(job_id, "cancelled by client"))

    def drop(self, job_id: str) -> None:
        self.runner.call_soon(lambda: self.runner.drop(job_id, "its lease is held elsewhere now"))

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    # -- on the runner's thread ---------------------------------------------------------------
    def _on_event(self, event: RunnerEvent) -> None:
        if isinstance(event, JobChanged):
            self._changed[event.task.job.id] = event.task
        elif isinstance(event, Tick) and self._waiting:
            report = self._collect()
            for box, done in self._waiting:
                box.append(report)
                done.set()
            self._waiting = []

    def _collect(self) -> NodeReport:
        runner = self.runner
        report = NodeReport(self.node_id)
        seen = runner.last_seen
        if seen is not None:
            report.snapshots, report.views = list(seen.snapshots), list(seen.views)
        for job in list(runner.queue):  # waiting here again (a retry): back to the head
            runner.queue.remove(job.id)
            runner.tasks.pop(job.id, None)
            report.returned.append(job.id)
        for job_id, task in self._changed.items():
            report.updates.append(self._update(task))
            if task.job.state.is_final:
                runner.tasks.pop(job_id, None)
        self._changed = {}
        report.devices = [
            {"id": d.id, "kind": d.kind, **split}
            for d in runner.devices.values()
            if (split := _split(runner, d.id))
        ]
        return report

    def _update(self, task: Task) -> JobUpdate:
        transcript = None
        if task.job.state is JobState.COMPLETED:
            result = self.runner.run_dir / "results" / f"{task.job.id}.{task.job.attempts}.json"
            transcript = result.read_text()
        return JobUpdate(
            copy.deepcopy(task.job), task.device_id, task.worker_pid, task.progress_s, transcript
        )


def _split(runner: Runner, dev_id: str) -> dict[str, Any]:
    """The device as ``/v1/devices`` shows it (``service.views.device_report``'s fields)."""
    from vramscribe.service.views import instance_state

    split = runner.memory_split(dev_id)
    if split is None:
        return {}
    return {
        "total_mb": split.total_mb,
        "others_mb": split.others_mb,
        "ours_mb": split.ours_mb,
        "reserved_mb": split.reserved_mb,
        "free_mb": split.free_mb,
        "instances": [
            {
                "job_id": i.job_id,
                "state": instance_state(i),
                "pid": i.pid,
                "reserved_mb": i.reserved_mb,
                "observed_mb": i.observed_mb,
            }
            for i in split.instances
        ],
    }


def agent_actor() -> Any:
    """The agent as a Ray actor class (Ray is imported only here)."""
    import ray

    remote: Any = ray.remote
    return remote(num_cpus=0, max_restarts=0)(NodeAgent)
