"""What only a real NVIDIA GPU can show, measured in under five minutes.

    python bench/gpu_check.py [--json PATH] [--gpu 0] [--jobs 40]

The fakes and the planner assume things about NVML and CUDA that no CPU test
can check: how long NVML takes to show an allocation, how much memory a CUDA
context costs each worker process, how soon the driver frees the memory of a
process that exited, and whether admission by the real planner keeps a busy
GPU free of out-of-memory errors. This script measures all four with worker
processes that allocate real device memory and run real matmuls (torch, else
cupy). The parent never initialises CUDA, so its own context does not blur
the numbers.

Exit status: 0 all good, 1 an out-of-memory error, a failed or unfinished job,
2 no GPU or no torch/cupy here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing
import os
import queue
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue as MpQueue
from pathlib import Path
from typing import Any

from vramscribe.core.footprints import FootprintBook, builtin_estimate
from vramscribe.core.jobs import Job, JobState, fail, transition
from vramscribe.core.observe import DeviceInfo, PolicyShell, Tracked
from vramscribe.core.planner import Start, plan
from vramscribe.core.profiles import PROFILES
from vramscribe.core.settings import Settings
from vramscribe.devices.base import Reading
from vramscribe.devices.nvml import NvmlDevice, discover_gpus, process_gpu_memory
from vramscribe.errors import DeviceUnavailable

MIB = 1024 * 1024
BUDGET_S = 270.0  # the whole run, so that it ends within ~4.5 minutes
PROBE_BUDGET_S = 90.0
POLL_S = 0.01
LAG_MB = 1024.0
LAG_REPEATS = 5
EXIT_HOLD_MB = 2048.0
WAIT_S = 5.0  # longest wait for one reading to change
# Footprints are the built-in estimates on an 80 GiB GPU, scaled to this one's total.
REFERENCE_TOTAL_MB = 80 * 1024.0
MATMUL_N = 4096

Message = tuple[str, str, float, dict[str, float] | str]


class ProbeFailed(RuntimeError):
    """The GPU could not be used for the measurements."""


# --- in the worker processes -------------------------------------------------------


def _import_backend() -> tuple[str, Any]:
    for name in ("torch", "cupy"):
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    raise ProbeFailed("neither torch nor cupy can be imported")


class _Gpu:
    """The little a worker needs from torch or cupy: a context, memory, matmuls."""

    def __init__(self, ordinal: int) -> None:
        self.kind, self.lib = _import_backend()
        self._mm: tuple[Any, Any, Any] | None = None
        if self.kind == "torch":
            self.device = self.lib.device(f"cuda:{ordinal}")
            self.lib.cuda.set_device(self.device)
            self.lib.zeros(1, device=self.device)
        else:
            self.device = self.lib.cuda.Device(ordinal)
            self.device.use()
            self.lib.zeros(1)
        self.sync()

    def sync(self) -> None:
        if self.kind == "torch":
            self.lib.cuda.synchronize(self.device)
        else:
            self.device.synchronize()

    def alloc(self, mb: float) -> Any:
        """Allocate and touch ``mb`` MiB, so the driver has really handed it out."""
        size = int(mb * MIB)
        if size <= 0:
            return None
        if self.kind == "torch":
            buf = self.lib.empty(size, dtype=self.lib.uint8, device=self.device)
            buf.fill_(1)
        else:
            buf = self.lib.empty(size, dtype=self.lib.uint8)
            buf.fill(1)
        self.sync()
        return buf

    def return_cached(self) -> None:
        """Give freed blocks back to the driver (both libraries cache them)."""
        if self.kind == "torch":
            self.lib.cuda.empty_cache()
        else:
            self.lib.get_default_memory_pool().free_all_blocks()
        self.sync()

    def matmul(self) -> None:
        if self._mm is None:
            n = MATMUL_N
            if self.kind == "torch":
                a = self.lib.randn(n, n, device=self.device, dtype=self.lib.float16)
                b = self.lib.randn(n, n, device=self.device, dtype=self.lib.float16)
            else:
                a = self.lib.random.standard_normal((n, n), dtype="float32").astype("float16")
                b = self.lib.random.standard_normal((n, n), dtype="float32").astype("float16")
            self._mm = (a, b, self.lib.empty_like(a))
        a, b, c = self._mm
        self.lib.matmul(a, b, out=c)

    def is_oom(self, exc: BaseException) -> bool:
        if self.kind == "torch":
            oom_type = getattr(self.lib.cuda, "OutOfMemoryError", None)
        else:
            oom_type = getattr(self.lib.cuda.memory, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return True
        text = str(exc).lower()
        return "out of memory" in text or "alloc_failed" in text


def _probe_worker(ordinal: int, conn: Connection) -> None:
    """Answers the parent's commands one by one, so the parent can time each effect."""
    try:
        gpu = _Gpu(ordinal)
    except Exception as exc:
        conn.send(("error", time.time(), repr(exc)))
        return
    conn.send(("ready", time.time(), gpu.kind))
    held: list[Any] = []
    while True:
        command, arg = conn.recv()
        if command == "alloc":
            held.append(gpu.alloc(arg))
        elif command == "free":
            held.clear()
            gpu.return_cached()
        elif command == "matmul":
            gpu.matmul()
            gpu.sync()
        conn.send(("done", time.time(), command))
        if command == "exit":
            return  # still holding whatever was allocated: the driver must free it


def _own_usage_mb(device_id: str, quiet_s: float = 0.3) -> float | None:
    """What NVML attributes to this process once it stops changing (None: not attributed).

    Waiting for a quiet spell matters: a lagging reading that is read too soon
    would make the worker allocate more than its reservation.
    """
    last = process_gpu_memory(os.getpid()).get(device_id)
    since = time.time()
    deadline = since + 3.0
    while time.time() - since < quiet_s and time.time() < deadline:
        time.sleep(0.03)
        now = process_gpu_memory(os.getpid()).get(device_id)
        if now != last:
            last, since = now, time.time()
    return last


def _job_worker(
    job_id: str,
    device_id: str,
    ordinal: int,
    target_mb: float,
    run_s: float,
    fallback_base_mb: float,
    out: MpQueue[Message],
) -> None:
    """One synthetic job: hold exactly the planner's reservation, compute, exit."""
    gpu: _Gpu | None = None
    try:
        gpu = _Gpu(ordinal)
        gpu.matmul()
        gpu.sync()
        base = _own_usage_mb(device_id)
        base_mb = base if base is not None else fallback_base_mb
        payload_mb = max(0.0, target_mb - base_mb)
        buf = gpu.alloc(payload_mb)
        out.put((job_id, "loaded", time.time(), {"base_mb": base_mb, "payload_mb": payload_mb}))
        end = time.time() + run_s
        matmuls = 0
        while time.time() < end:
            gpu.matmul()
            gpu.sync()
            matmuls += 1
        del buf
        out.put((job_id, "done", time.time(), {"matmuls": float(matmuls)}))
    except Exception as exc:
        kind = "oom" if gpu is not None and gpu.is_oom(exc) else "error"
        if gpu is None and "out of memory" in str(exc).lower():
            kind = "oom"
        out.put((job_id, kind, time.time(), repr(exc)))


# --- in the parent ------------------------------------------------------------------


def _recv(conn: Connection, deadline: float) -> tuple[str, float, Any]:
    if not conn.poll(max(0.0, deadline - time.time())):
        raise ProbeFailed("the probe worker did not answer in time")
    kind, at, info = conn.recv()
    if kind == "error":
        raise ProbeFailed(f"the probe worker could not use the GPU: {info}")
    return str(kind), float(at), info


def _settle(dev: NvmlDevice, pid: int, quiet_s: float = 0.3) -> Reading:
    """Poll until the device and the pid's memory stop changing for ``quiet_s``."""
    deadline = time.time() + WAIT_S
    reading = dev.read(time.time())
    key = (reading.free_mb, reading.processes.get(pid))
    since = time.time()
    while time.time() - since < quiet_s and time.time() < deadline:
        time.sleep(POLL_S)
        reading = dev.read(time.time())
        now_key = (reading.free_mb, reading.processes.get(pid))
        if now_key != key:
            key, since = now_key, time.time()
    return reading


def _time_until(
    dev: NvmlDevice, since: float, conditions: dict[str, Callable[[Reading], bool]]
) -> dict[str, float | None]:
    """Milliseconds from ``since`` until each condition first holds (None: not within WAIT_S)."""
    seen: dict[str, float | None] = dict.fromkeys(conditions)
    while time.time() < since + WAIT_S and any(v is None for v in seen.values()):
        reading = dev.read(time.time())
        for name, check in conditions.items():
            if seen[name] is None and check(reading):
                seen[name] = max(0.0, (reading.time - since) * 1000)
        time.sleep(POLL_S)
    return seen


def probe(dev: NvmlDevice, ordinal: int, ctx: SpawnContext, budget_s: float) -> dict[str, Any]:
    """(a) NVML lag, (b) CUDA context size, (c) release after exit, with one worker."""
    deadline = time.time() + budget_s
    idle = dev.read(time.time())
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_probe_worker, args=(ordinal, child_conn), daemon=True)
    proc.start()
    assert proc.pid is not None
    pid = proc.pid
    try:
        _, ready_at, backend = _recv(conn, deadline)
        # A lagging NVML may list the new process late; only a long absence means never.
        shown = _time_until(dev, ready_at, {"listed": lambda r: pid in r.processes})
        attributed = shown["listed"] is not None
        ready = _settle(dev, pid)
        context_mb = ready.processes[pid] if attributed else idle.free_mb - ready.free_mb

        def command(name: str, arg: float | None) -> float:
            conn.send((name, arg))
            return _recv(conn, deadline)[1]

        lags: dict[str, list[float | None]] = {"process_ms": [], "free_ms": [], "release_ms": []}
        for _ in range(LAG_REPEATS):
            if time.time() > deadline - 30:
                break  # leave time for the exit measurement
            for name, value in _measure_lag(dev, pid, attributed, command).items():
                lags[name].append(value)

        command("matmul", None)
        after_matmul = _settle(dev, pid)
        with_matmul_mb = (
            after_matmul.processes.get(pid, 0.0)
            if attributed
            else idle.free_mb - after_matmul.free_mb
        )

        command("alloc", EXIT_HOLD_MB)
        _settle(dev, pid)
        last_message = command("exit", None)
        proc.join(max(1.0, deadline - time.time()))
        exited = time.time()
        gone = _time_until(
            dev,
            exited,
            {
                "pid_gone_ms": lambda r: pid not in r.processes,
                "free_back_ms": lambda r: r.free_mb >= idle.free_mb - 64,
            },
        )
        if not attributed:
            gone["pid_gone_ms"] = None
        return {
            "backend": backend,
            "pid_attributed": attributed,
            "lag": lags,
            "context_mb": context_mb,
            "context_with_matmul_mb": with_matmul_mb,
            "exit": {**gone, "exit_after_last_message_ms": (exited - last_message) * 1000},
        }
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _measure_lag(
    dev: NvmlDevice, pid: int, attributed: bool, command: Callable[[str, float | None], float]
) -> dict[str, float | None]:
    """One allocation and one free by the probe worker, timed from its own report."""
    before = _settle(dev, pid)
    own = before.processes.get(pid, 0.0)
    at = command("alloc", LAG_MB)
    visible: dict[str, Callable[[Reading], bool]] = {
        "free_ms": lambda r: r.free_mb <= before.free_mb - 0.95 * LAG_MB
    }
    if attributed:
        visible["process_ms"] = lambda r: r.processes.get(pid, 0.0) >= own + 0.95 * LAG_MB
    got: dict[str, float | None] = {"process_ms": None}
    got.update(_time_until(dev, at, visible))
    at = command("free", None)
    got.update(
        _time_until(dev, at, {"release_ms": lambda r: r.free_mb >= before.free_mb - 0.05 * LAG_MB})
    )
    return got


@dataclass(slots=True)
class _Run:
    job: Job
    proc: SpawnProcess
    inst: Tracked
    info: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Tally:
    oom: int = 0
    errors: list[str] = field(default_factory=list)
    rejected: int = 0
    peak_used_mb: float = 0.0
    peak_instances: int = 0
    release_ms: list[float] = field(default_factory=list)
    reserved_mb: list[float] = field(default_factory=list)


def _make_jobs(
    n: int, scale: float, rng: random.Random
) -> tuple[list[Job], dict[str, float], FootprintBook]:
    """Jobs of real model names whose learned footprints are the built-ins times ``scale``.

    Audio lengths are chosen so that the planner's expected duration matches
    the seconds each worker will compute, keeping its end-time estimates honest.
    """
    book = FootprintBook()
    jobs: list[Job] = []
    run_s: dict[str, float] = {}
    for i in range(n):
        job = Job(
            f"j{i:02d}",
            rng.choice(list(PROFILES)),
            priority=rng.choice([50, 50, 50, 75]),
            compute_type=rng.choice(["float16", "int8"]),
            batch_size=rng.choice([1, 1, 1, 8]),
        )
        key = job.footprint_key("cuda")
        if key not in book.learned:
            book.observe_peak(key, builtin_estimate(key) * scale, 0.0)
        run_s[job.id] = rng.uniform(5.0, 14.0)
        job.audio_s = run_s[job.id] * book.speed(key)
        jobs.append(job)
    return jobs, run_s, book


def _drain(
    messages: MpQueue[Message], runs: dict[str, _Run], shell: PolicyShell, tally: _Tally
) -> None:
    while True:
        try:
            job_id, kind, at, info = messages.get_nowait()
        except queue.Empty:
            return
        run = runs.get(job_id)
        if run is None:
            continue
        if kind == "loaded" and isinstance(info, dict):
            shell.loaded(run.inst, at)
            run.info.update(info)
            transition(run.job, JobState.PROCESSING, at, "worker holds its memory")
        elif kind == "done":
            transition(run.job, JobState.COMPLETED, at, "done")
        else:
            if kind == "oom":
                tally.oom += 1
            tally.errors.append(f"{job_id}: {info}")
            fail(run.job, at, str(info))


@dataclass(slots=True)
class _Batch:
    """One synthetic batch on one GPU, admitted through the runtime's policy shell."""

    dev: NvmlDevice
    ordinal: int
    ctx: SpawnContext
    base_mb: float
    jobs: list[Job]
    run_s: dict[str, float]
    book: FootprintBook
    settings: Settings
    shell: PolicyShell
    messages: MpQueue[Message]
    runs: dict[str, _Run] = field(default_factory=dict)
    tally: _Tally = field(default_factory=_Tally)

    def step(self, now: float) -> bool:
        """One decision: note exits, read messages, observe, plan, start. False when done."""
        # Note exits before reading messages: a worker's last message is sent before it exits.
        for run in self.runs.values():
            if run.inst.exited_at is None and not run.proc.is_alive():
                self.shell.exited(run.inst, now)
        _drain(self.messages, self.runs, self.shell, self.tally)
        for run in self.runs.values():
            if run.inst.exited_at is not None and not run.job.state.is_final:
                self.tally.errors.append(f"{run.job.id}: worker exited ({run.proc.exitcode})")
                fail(run.job, now, "worker exited")
        reading = self.dev.read(now)
        self.tally.peak_used_mb = max(self.tally.peak_used_mb, reading.used_mb)
        info = [DeviceInfo(self.dev.id, "cuda", reading_lag_s=self.dev.reading_lag_s)]
        seen = self.shell.observe(now, {self.dev.id: reading}, info)
        for inst in seen.released:
            assert inst.exited_at is not None
            self.tally.release_ms.append((now - inst.exited_at) * 1000)
            del self.runs[inst.job_id]
        pending = [job for job in self.jobs if job.state is JobState.PENDING]
        if not pending and not self.runs:
            return False
        decision = plan(now, pending, seen.snapshots, seen.views, self.settings, self.book)
        for reject in decision.rejects:
            self.tally.rejected += 1
            fail(next(j for j in pending if j.id == reject.job_id), now, reject.reason)
        for admit in decision.starts:
            self._start(next(j for j in pending if j.id == admit.job_id), admit, now)
        self.tally.peak_instances = max(self.tally.peak_instances, len(self.runs))
        return True

    def _start(self, job: Job, admit: Start, now: float) -> None:
        args = (job.id, self.dev.id, self.ordinal, admit.reserved_mb, self.run_s[job.id],
                self.base_mb, self.messages)  # fmt: skip
        proc = self.ctx.Process(target=_job_worker, args=args, daemon=True)
        proc.start()
        assert proc.pid is not None
        transition(job, JobState.LOADING, now, f"admitted on {self.dev.id}")
        inst = Tracked(job.id, self.dev.id, proc.pid, admit.reserved_mb, admit.expected_end)
        self.shell.start(inst)
        self.runs[job.id] = _Run(job, proc, inst)
        self.tally.reserved_mb.append(admit.reserved_mb)


def run_jobs(
    dev: NvmlDevice,
    ordinal: int,
    ctx: SpawnContext,
    n_jobs: int,
    base_mb: float,
    attributed: bool,
    settle_s: float,
    max_loads: int,
    budget_s: float,
    seed: int,
) -> dict[str, Any]:
    """(d) A mixed batch admitted by the real planner; every worker holds its reservation."""
    start = time.time()
    deadline = start + budget_s
    total_mb = dev.read(start).total_mb
    scale = total_mb / REFERENCE_TOTAL_MB
    jobs, run_s, book = _make_jobs(n_jobs, scale, random.Random(seed))
    settings = Settings(
        max_instances_per_device=n_jobs, max_instances_total=n_jobs, max_loads_per_device=max_loads
    )
    shell = PolicyShell(settle_s=settle_s)
    # The probe already knows whether NVML names our processes here.
    shell.attributed[dev.id] = attributed
    batch = _Batch(dev, ordinal, ctx, base_mb, jobs, run_s, book, settings, shell, ctx.Queue())
    while time.time() < deadline and batch.step(time.time()):
        time.sleep(0.05)
    leaked = [r.job.id for r in batch.runs.values() if r.inst.exited_at is not None]
    for run in batch.runs.values():
        if run.proc.is_alive():
            run.proc.kill()
            run.proc.join(5)
    states = [job.state for job in jobs]
    tally = batch.tally
    return {
        "jobs": n_jobs,
        "scale": scale,
        "completed": states.count(JobState.COMPLETED),
        "oom_errors": tally.oom,
        "failed": states.count(JobState.FAILED),
        "unfinished": sum(1 for s in states if not s.is_final),
        "rejected": tally.rejected,
        "not_released": leaked,
        "errors": tally.errors[:10],
        "peak_used_mb": tally.peak_used_mb,
        "peak_utilisation": tally.peak_used_mb / total_mb,
        "peak_instances": tally.peak_instances,
        "release_after_exit_ms": _stats(tally.release_ms),
        "reserved_mb": _stats(tally.reserved_mb),
        "wall_s": time.time() - start,
    }


# --- (e) warm instances -------------------------------------------------------------
WARM_BUDGET_S = 45.0
WARM_KEEP_ALIVE_S = 3.0
WARM_JOBS = 12


class _FakeGpu:
    """A stand-in where there is no GPU (``--fake-gpu``): memory on the shared fake device,
    sleeps for matmuls. It exercises the parent's logic only; the numbers mean nothing."""

    kind = "fake"

    def __init__(self, path: str) -> None:
        from vramscribe.devices.shared_fake import SharedFakeDevice

        self.dev = SharedFakeDevice(path)
        self.held = 0.0

    def alloc(self, mb: float) -> float:
        self.dev.allocate(os.getpid(), mb)
        self.held += mb
        return mb

    def shrink_to(self, mb: float) -> None:
        self.dev.release(os.getpid())
        self.held = 0.0
        self.alloc(mb)

    def matmul(self) -> None:
        time.sleep(0.02)

    def sync(self) -> None:
        return None

    def is_oom(self, exc: BaseException) -> bool:
        return "out of memory" in str(exc).lower()


def _warm_worker(
    backend: tuple[str, Any], device_id: str, model_mb: float, conn: Connection
) -> None:
    """One warm instance: hold a model's memory, then serve jobs until told to exit."""
    gpu: Any = None
    try:
        if backend[0] == "fake":
            gpu = _FakeGpu(str(backend[1]))
            gpu.alloc(model_mb)
            model = None
        else:
            gpu = _Gpu(int(backend[1]))
            gpu.matmul()
            gpu.sync()
            base = _own_usage_mb(device_id) or 0.0
            model = gpu.alloc(max(0.0, model_mb - base))
        conn.send(("loaded", time.time(), {"model_mb": model_mb}))
        while True:
            msg = conn.recv()
            if msg[0] == "exit":
                del model
                return
            _, job_id, extra_mb, run_s = msg
            buf = gpu.alloc(extra_mb)
            end = time.time() + run_s
            while time.time() < end:
                gpu.matmul()
                gpu.sync()
            del buf
            if backend[0] == "fake":
                gpu.shrink_to(model_mb)
            else:
                gpu.return_cached()
            conn.send(("done", time.time(), job_id))
    except Exception as exc:
        kind = "oom" if gpu is not None and gpu.is_oom(exc) else "error"
        conn.send((kind, time.time(), repr(exc)))


@dataclass(slots=True)
class _WarmInst:
    proc: SpawnProcess
    conn: Connection
    inst: Tracked
    job: Job | None = None


@dataclass(slots=True)
class _WarmRun:
    """Jobs of one key served by warm instances through the shell and the planner."""

    dev: Any
    backend: tuple[str, Any]
    ctx: SpawnContext
    settings: Settings
    book: FootprintBook
    shell: PolicyShell
    run_s: dict[str, float]
    jobs: list[Job] = field(default_factory=list)
    live: dict[str, _WarmInst] = field(default_factory=dict)
    spawned: int = 0
    warm_starts: int = 0
    evictions: int = 0
    ooms: int = 0
    errors: list[str] = field(default_factory=list)
    released_after_keep_alive_ms: list[float] = field(default_factory=list)

    def step(self, now: float) -> None:
        for w in list(self.live.values()):
            if w.inst.exited_at is None and not w.proc.is_alive():
                self.shell.exited(w.inst, now)
            while w.inst.exited_at is None and w.conn.poll():
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):  # it exited after its last message
                    break
                self._message(w, msg, now)
        seen = self.shell.observe(
            now,
            {self.dev.id: self.dev.read(now)},
            [DeviceInfo(self.dev.id, "cuda", reading_lag_s=self.dev.reading_lag_s)],
        )
        for inst in seen.released:
            w = self.live.pop(inst.instance_id)
            if w.job is None and inst.idle_since is not None:
                late = now - (inst.idle_since + self.settings.keep_alive_s)
                self.released_after_keep_alive_ms.append(max(0.0, late) * 1000)
        pending = [j for j in self.jobs if j.state is JobState.PENDING]
        decision = plan(now, pending, seen.snapshots, seen.views, self.settings, self.book)
        for rel in decision.releases:
            self.evictions += rel.reason.startswith("evicted")
            w = self.live[rel.instance_id]
            w.inst.closing = True
            w.conn.send(("exit",))
        for start in decision.starts:
            job = next(j for j in pending if j.id == start.job_id)
            self._start(job, start, now)

    def _start(self, job: Job, start: Start, now: float) -> None:
        if start.instance_id is not None:
            w = self.live[start.instance_id]
            self.shell.assign(w.inst, job.id, start.reserved_mb, start.expected_end, job.priority,
                              now, start.batch_size)  # fmt: skip
            self.warm_starts += 1
            transition(job, JobState.PROCESSING, now, "warm")
        else:
            parent, child = self.ctx.Pipe()
            model_mb = self.book.loaded_mb(job.footprint_key("cuda"))
            proc = self.ctx.Process(
                target=_warm_worker, args=(self.backend, self.dev.id, model_mb, child), daemon=True
            )
            proc.start()
            assert proc.pid is not None
            inst = Tracked(job.id, self.dev.id, proc.pid, start.reserved_mb, start.expected_end,
                           job.priority, job.reuse_key)  # fmt: skip
            inst.batch_size = start.batch_size
            self.shell.start(inst)
            self.shell.started(inst)
            w = self.live[inst.instance_id] = _WarmInst(proc, parent, inst)
            self.spawned += 1
            transition(job, JobState.LOADING, now, "new instance")
        w.job = job
        extra = max(0.0, start.reserved_mb - self.book.loaded_mb(job.footprint_key("cuda")))
        w.conn.send(("job", job.id, extra, self.run_s[job.id]))

    def _message(self, w: _WarmInst, msg: tuple[str, float, Any], now: float) -> None:
        kind, at, info = msg
        if kind == "loaded":
            self.shell.loaded(w.inst, at)
            if w.job is not None and w.job.state is JobState.LOADING:
                transition(w.job, JobState.PROCESSING, at, "loaded")
        elif kind == "done" and w.job is not None:
            transition(w.job, JobState.COMPLETED, at, "done")
            w.job = None
            self.shell.idle(w.inst, now)
        elif kind in ("oom", "error"):
            self.ooms += kind == "oom"
            self.errors.append(str(info))
            if w.job is not None:
                fail(w.job, at, str(info))
                w.job = None

    def run(self, until: Callable[[], bool], deadline: float) -> None:
        while time.time() < deadline and not until():
            self.step(time.time())
            time.sleep(0.05)

    def finish(self) -> None:
        for w in self.live.values():
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)


def _warm_jobs(
    n: int, model: str, run_s: float, book: FootprintBook, prefix: str
) -> tuple[list[Job], dict[str, float]]:
    jobs, runs = [], {}
    for i in range(n):
        job = Job(f"{prefix}{i:02d}", model, compute_type="float16", batch_size=1)
        runs[job.id] = run_s * (1.0 + 0.25 * (i % 3))
        job.audio_s = runs[job.id] * book.speed(job.footprint_key("cuda"))
        jobs.append(job)
    return jobs, runs


def warm_reuse(dev: Any, backend: tuple[str, Any], ctx: SpawnContext, settle_s: float,
               budget_s: float, run_s: float = 2.0) -> dict[str, Any]:  # fmt: skip
    """(e) Warm instances on a real GPU: one model's jobs served by a few loaded instances,
    idle ones released after the keep-alive, then idle ones evicted for a big job."""
    start = time.time()
    deadline = start + budget_s
    total = dev.read(start).total_mb
    book = FootprintBook()
    small = ("small", "float16", 1, "cuda")
    book.observe_peak(small, builtin_estimate(small) * total / REFERENCE_TOTAL_MB, 0.0)
    settings = Settings(keep_alive_s=WARM_KEEP_ALIVE_S, max_instances_per_device=4,
                        max_loads_per_device=2)  # fmt: skip
    run = _WarmRun(dev, backend, ctx, settings, book, PolicyShell(settle_s=settle_s), {})
    run.jobs, run.run_s = _warm_jobs(WARM_JOBS, "small", run_s, book, "w")
    run.run(lambda: not run.live and all(j.state.is_final for j in run.jobs), deadline)
    result: dict[str, Any] = {
        "jobs": len(run.jobs),
        "completed": sum(j.state is JobState.COMPLETED for j in run.jobs),
        "loads": run.spawned,
        "warm_starts": run.warm_starts,
        "released_after_keep_alive_ms": _stats(run.released_after_keep_alive_ms),
    }
    # Eviction: idle small instances kept (long keep-alive), then a job too big beside them.
    run.settings = Settings(keep_alive_s=600.0, max_instances_per_device=4, max_loads_per_device=2)
    extra, extra_runs = _warm_jobs(3, "small", run_s, book, "k")
    run.jobs += extra
    run.run_s.update(extra_runs)
    run.run(lambda: all(j.state.is_final for j in extra) and all(
        w.job is None for w in run.live.values()), deadline)  # fmt: skip
    reading = dev.read(time.time())
    idle_mb = sum(w.inst.observed_mb or w.inst.reserved_mb for w in run.live.values())
    big_key = ("large-v3", "float16", 1, "cuda")
    usable = reading.free_mb - settings.safety_margin * reading.total_mb
    book.observe_peak(big_key, max(usable + 0.5 * idle_mb, 1.0), 0.0)
    [big], big_run = _warm_jobs(1, "large-v3", run_s, book, "big")
    run.jobs.append(big)
    run.run_s.update(big_run)
    before = run.evictions
    run.run(lambda: big.state.is_final, deadline)
    run.finish()
    result.update(
        evicted_for_big_job=run.evictions - before,
        big_job=big.state.value,
        out_of_memory=run.ooms,
        errors=run.errors[:5],
        unfinished=sum(not j.state.is_final for j in run.jobs),
        wall_s=time.time() - start,
    )
    return result


def _stats(values: list[float | None] | list[float]) -> dict[str, float | int | None]:
    known = [v for v in values if v is not None]
    return {
        "n": len(values),
        "missing": len(values) - len(known),
        "min": min(known) if known else None,
        "p50": statistics.median(known) if known else None,
        "max": max(known) if known else None,
    }


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.0f}{unit}" if abs(value) >= 10 else f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _stat_cell(stats: dict[str, float | int | None], unit: str = " ms") -> str:
    cell = f"p50 {_fmt(stats['p50'], unit)}, max {_fmt(stats['max'], unit)}"
    return cell + (f" ({stats['missing']} never)" if stats["missing"] else "")


def report(results: dict[str, Any]) -> None:
    rows = [("GPU", f"{results['device']} {results['name']} ({results['total_mb']:.0f} MB)")]
    p = results.get("probe")
    if p is not None:
        lag = {k: _stats(v) for k, v in p["lag"].items()}
        rows += [
            ("backend", p["backend"]),
            ("NVML attributes memory to our pids", "yes" if p["pid_attributed"] else "no"),
            (f"(a) lag, {LAG_MB:.0f} MB alloc: per process", _stat_cell(lag["process_ms"])),
            ("(a) lag, same alloc: free", _stat_cell(lag["free_ms"])),
            ("(a) lag, after free: free back", _stat_cell(lag["release_ms"])),
            ("(b) CUDA context per process", _fmt(p["context_mb"], " MB")),
            ("(b) same process after a matmul", _fmt(p["context_with_matmul_mb"], " MB")),
            ("(c) pid gone from NVML after exit", _fmt(p["exit"]["pid_gone_ms"], " ms")),
            ("(c) memory free after exit", _fmt(p["exit"]["free_back_ms"], " ms")),
            ("(c) exit after last message", _fmt(p["exit"]["exit_after_last_message_ms"], " ms")),
        ]
    j = results.get("jobs")
    if j is not None:
        rows += [
            ("(d) jobs completed", f"{j['completed']}/{j['jobs']}"),
            ("(d) out-of-memory errors", str(j["oom_errors"])),
            (
                "(d) other failures / unfinished",
                f"{j['failed'] - j['oom_errors']} / {j['unfinished']}",
            ),
            (
                "(d) peak used",
                f"{j['peak_utilisation']:.0%} ({j['peak_used_mb']:.0f} MB), "
                f"{j['peak_instances']} instances",
            ),
            (
                "(d) reservations",
                f"{_fmt(j['reserved_mb']['min'], ' MB')} to {_fmt(j['reserved_mb']['max'], ' MB')}",
            ),
            ("(d) memory released after exit", _stat_cell(j["release_after_exit_ms"])),
            ("(d) wall time", _fmt(j["wall_s"], " s")),
        ]
    w = results.get("warm")
    if w is not None:
        rows += [
            ("(e) warm: jobs completed", f"{w['completed']}/{w['jobs']}"),
            ("(e) warm: model loads / warm starts", f"{w['loads']} / {w['warm_starts']}"),
            ("(e) idle released after keep-alive", _stat_cell(w["released_after_keep_alive_ms"])),
            ("(e) idle instances evicted for a big job", str(w["evicted_for_big_job"])),
            ("(e) big job / out-of-memory errors", f"{w['big_job']} / {w['out_of_memory']}"),
            ("(e) wall time", _fmt(w["wall_s"], " s")),
        ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for error in [*(j or {}).get("errors", []), *(w or {}).get("errors", [])]:
        print(f"  {error}")


def _warm_status(w: dict[str, Any]) -> int:
    ok = (
        w["completed"] == w["jobs"]
        and w["loads"] < w["jobs"]
        and w["out_of_memory"] == 0
        and w["unfinished"] == 0
        and w["big_job"] == "completed"
        and w["evicted_for_big_job"] > 0
    )
    return 0 if ok else 1


def _fake_run(path: str, json_path: Path | None) -> int:
    """The warm phase against a shared fake device: for machines without a GPU."""
    from vramscribe.devices.shared_fake import SharedFakeDevice

    dev = SharedFakeDevice.create(path, total_mb=REFERENCE_TOTAL_MB / 8, lag_s=0.2)
    ctx = multiprocessing.get_context("spawn")
    warm = warm_reuse(dev, ("fake", path), ctx, settle_s=0.5, budget_s=120.0, run_s=0.5)
    results = {"device": dev.id, "name": "shared fake", "total_mb": dev.read(0).total_mb}
    results["warm"] = warm
    report(results)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    return _warm_status(warm)


def _settle_s(probe: dict[str, Any]) -> float:
    """How long until a reading surely shows an allocation in ``free``: twice the worst lag."""
    worst = _stats(probe["lag"]["free_ms"])["max"]
    return 0.1 + 2 * (worst if worst is not None else WAIT_S * 1000) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="measure NVML and admission on a real GPU")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gpu", type=int, default=0, help="CUDA ordinal of the GPU to use")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--max-loads", type=int, default=8, help="concurrent loads per device")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--fake-gpu",
        metavar="PATH",
        help="no GPU: run only the warm phase on a shared fake device file (checks the logic)",
    )
    args = parser.parse_args(argv)
    started = time.time()
    if args.fake_gpu:
        return _fake_run(args.fake_gpu, args.json)
    # Workers must number GPUs the way NVML does.
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if not any(importlib.util.find_spec(name) for name in ("torch", "cupy")):
        print("gpu_check needs torch or cupy with CUDA support; neither is installed")
        return 2
    try:
        devices = discover_gpus()
    except DeviceUnavailable as exc:
        print(f"gpu_check needs an NVIDIA GPU: {exc}")
        return 2
    if not 0 <= args.gpu < len(devices):
        print(f"--gpu {args.gpu}: only {len(devices)} GPU(s) visible")
        return 2
    dev = devices[args.gpu]
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {
        "device": dev.id,
        "name": dev.name,
        "total_mb": dev.read(started).total_mb,
    }
    status = 0
    try:
        results["probe"] = probe(dev, args.gpu, ctx, PROBE_BUDGET_S)
        p = results["probe"]
        results["jobs"] = run_jobs(
            dev,
            args.gpu,
            ctx,
            args.jobs,
            base_mb=p["context_with_matmul_mb"],
            attributed=p["pid_attributed"],
            settle_s=_settle_s(p),
            max_loads=args.max_loads,
            budget_s=max(30.0, BUDGET_S - WARM_BUDGET_S - (time.time() - started)),
            seed=args.seed,
        )
        j = results["jobs"]
        if j["oom_errors"] or j["failed"] or j["unfinished"] or j["not_released"]:
            status = 1
        budget = max(20.0, BUDGET_S + WARM_BUDGET_S - (time.time() - started))
        results["warm"] = warm_reuse(dev, ("cuda", args.gpu), ctx, _settle_s(p), budget)
        status = status or _warm_status(results["warm"])
    except ProbeFailed as exc:
        print(f"gpu_check: {exc}")
        status = 2
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
