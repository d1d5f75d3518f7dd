"""Scaling over nodes: 1, 2 and 4 simulated nodes, on Ray or on one PostgreSQL queue.

    python bench/cluster_scale.py [--mode ray|store] [--nodes 1,2,4] [--store PG_URL]

``--mode ray`` (default): a local ``ray.cluster_utils.Cluster`` with one node
per simulated machine, each labelled with its own shared fake GPU, and the
head (:class:`~vramscribe.cluster.ray_head.RayHead`) in this process over a
SQLite store: the head polls every agent each 0.2 s (the default poll
interval), plans for each node over the global queue and leases jobs to it.

``--mode store``: each simulated node is a real ``vramscribe serve`` process with its own data
folder (so its own node id), its own host folder and its own shared fake GPU
(6000 MB, the fake engine: 1100 MB per instance, 20x real time, 0.5 s load),
all sharing one PostgreSQL schema; an ``--api-only`` service takes the
submissions, so every job reaches a node through a lease claim. The job mix is
fixed: 48 jobs cycling 5, 10, 20, 30, 45 and 60 s of (silent) audio,
priorities low/normal/high in turn, submitted at once. Printed per node count:

- throughput (jobs/s and audio seconds per wall second) from the first
  submission to the last completion, and scaling efficiency
  ``throughput(N) / (N * throughput(1))``;
- dispatch overhead per job: wall time times running slots, less the jobs'
  own running time (load + transcription, from their histories), per job;
- submission-to-start latency on an idle cluster: 10 jobs submitted one at a
  time, each after the previous finished, until the job starts (``loading``, or
  ``processing`` on a warm instance), p50 and max. In ray mode the head steps
  right after a submission; in store mode a scheduler claims new jobs every
  0.2 s, and the service as a Ray head (``serve --ray``) takes new jobs from its
  store every 0.5 s, which adds to this.

Both modes use the same fake GPUs (6000 MB: four 1100 MB instances with their
margin) and the same job mix. On a machine with fewer cores than nodes times
instances, the CPU (not the scheduler) limits the scaling efficiency.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-token"
SECONDS = (5, 10, 20, 30, 45, 60)
PRIORITIES = ("low", "normal", "high")
JOBS = 48
FAKE = {"memory_mb": 1100, "speed_x": 20.0, "load_s": 0.5}
STARTED = ("loading", "processing")


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))


@contextmanager
def schema(url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    admin = create_engine(url)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        scoped = admin.url.update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def serve(folder: Path, store: str, root: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    import json

    from vramscribe.devices.shared_fake import SharedFakeDevice

    folder.mkdir(parents=True)
    gpu = SharedFakeDevice.create(folder / "gpu.json", total_mb=6000)
    at = port()
    cmd = [
        sys.executable, "-m", "vramscribe", "serve", "--data-dir", str(folder / "data"),
        "--port", str(at), "--token", TOKEN, "--store", store, "--allowed-root", str(root),
        "--device", f"fake:{gpu.path}", "--engine", "fake", "--model", "small",
        "--fake-config", json.dumps({**FAKE, "device_path": str(gpu.path)}), *extra,
    ]  # fmt: skip
    env = {**os.environ, "VRAMSCRIBE_HOST_DIR": str(folder / "host")}
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{at}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((folder / "serve.log").read_text()[-2000:])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{folder} did not become ready")


def wait(c: httpx.Client, ids: list[str], timeout: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j: c.get(f"/v1/jobs/{j}").json() for j in ids}
        if all(v["status"] in ("completed", "failed", "cancelled") for v in jobs.values()):
            return jobs
        time.sleep(0.2)
    raise RuntimeError("jobs did not finish")


def entry(job: dict[str, Any], to: str) -> float:
    """When ``job`` first entered ``to``; ``started``: loading, or processing on a warm
    instance (no load)."""
    wanted = ("loading", "processing") if to == "started" else (to,)
    return float(min(h["time"] for h in job["history"] if h["to"] in wanted))


def measure(nodes: int, store_url: str, tmp: Path, root: Path) -> dict[str, float]:
    procs: list[subprocess.Popen[bytes]] = []
    with schema(store_url) as store:
        try:
            for n in range(nodes):
                procs.append(serve(tmp / f"n{nodes}-{n}", store, root)[0])
            api_proc, api = serve(tmp / f"n{nodes}-api", store, root, "--api-only")
            procs.append(api_proc)
            with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                return run_mix(c, nodes)
        finally:  # before the schema goes
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)


def run_mix(c: httpx.Client, nodes: int) -> dict[str, float]:
    # Idle cluster first: one job at a time, submission to start.
    latency = []
    for n in range(10):
        r = c.post("/v1/jobs", json={"path": f"a{SECONDS[n % 2]}.wav"})
        job = wait(c, [r.json()["id"]])[r.json()["id"]]
        latency.append(entry(job, "started") - job["submitted_at"])
    started = time.time()
    ids = []
    for n in range(JOBS):
        body = {"path": f"a{SECONDS[n % len(SECONDS)]}.wav", "priority": PRIORITIES[n % 3]}
        r = c.post("/v1/jobs", json=body)
        r.raise_for_status()
        ids.append(r.json()["id"])
    jobs = wait(c, ids)
    ended = max(entry(j, "completed") for j in jobs.values())
    wall = ended - started
    busy = sum(entry(j, "completed") - entry(j, "started") for j in jobs.values())
    slots = nodes * 4  # 6000 MB fake GPUs hold four 1100 MB instances with their margin
    assert all(j["status"] == "completed" for j in jobs.values())
    return {
        "nodes": nodes,
        "wall_s": wall,
        "jobs_per_s": JOBS / wall,
        "audio_x": sum(j["audio_s"] for j in jobs.values()) / wall,
        "overhead_s": max(0.0, wall * slots - busy) / JOBS,
        "start_p50_ms": statistics.median(latency) * 1000,
        "start_max_ms": max(latency) * 1000,
    }


def measure_ray(nodes: int, tmp: Path, root: Path) -> dict[str, float]:
    """The same mix through a Ray head over ``nodes`` labelled nodes."""
    import ray
    from ray.cluster_utils import Cluster

    from vramscribe.cluster.ray_head import DEVICE_LABEL, RayHead
    from vramscribe.core.settings import Settings
    from vramscribe.devices.shared_fake import SharedFakeDevice
    from vramscribe.store import Store

    folder = tmp / f"ray{nodes}"
    folder.mkdir()
    os.environ["VRAMSCRIBE_HOST_DIR"] = str(folder / "host")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    gpu = folder / "gpu0.json"
    for n in range(nodes):
        SharedFakeDevice.create(folder / f"gpu{n}.json", total_mb=6000)
        cluster.add_node(num_cpus=1, labels={DEVICE_LABEL: f"fake:{folder / f'gpu{n}.json'}"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        with Store(f"sqlite:///{folder / 'store.db'}") as store:
            head = RayHead(store, Settings(), folder / "head", address=None, shared_path=root)
            submit = RaySubmit(store, head, root, folder, gpu)
            for _ in range(nodes):  # wait for every agent before timing anything
                submit.one(5)
            while len([n for n in head.nodes.values() if n.ready]) < nodes:
                head.step()
            try:
                return run_mix_ray(submit, head, nodes)
            finally:
                head.close()
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]


class RaySubmit:
    """New stored jobs for the head, each of ``seconds`` of fake audio."""

    def __init__(self, store: Any, head: Any, root: Path, folder: Path, gpu: Path) -> None:
        self.store, self.head, self.root, self.folder, self.gpu = store, head, root, folder, gpu
        self.n = 0

    def one(self, seconds: int, priority: int = 50) -> str:
        from vramscribe.runtime.persist import task_from_record
        from vramscribe.submit.build import build_job, choose_model
        from vramscribe.submit.request import JobRequest

        self.n += 1
        out = self.folder / "out" / f"j{self.n}.json"
        request = JobRequest(
            input=self.root / f"a{seconds}.wav", model="small", priority=priority, engine="fake",
            fake={**FAKE, "device_path": str(self.gpu)}, outputs=(("json", out),),
        )  # fmt: skip
        built = build_job(
            request, choose_model("small", "fake"), cpu_threads=1, now=time.time(), audio_s=seconds
        )
        record = self.store.add(built.record)
        self.head.add(task_from_record(record))
        return str(record.id)


def run_mix_ray(submit: RaySubmit, head: Any, nodes: int) -> dict[str, float]:
    head.run()
    latency = []
    for n in range(10):
        job_id = submit.one(SECONDS[n % 2])
        head.run()
        job = head.tasks[job_id].job
        started = min(h.time for h in job.history if h.to_state.value in STARTED)
        latency.append(started - job.submitted_at)
    began = time.time()
    ids = [submit.one(SECONDS[n % len(SECONDS)], (10, 50, 90)[n % 3]) for n in range(JOBS)]
    head.run()
    jobs = [head.tasks[i].job for i in ids]
    assert all(j.state.value == "completed" for j in jobs)

    def at(job: Any, to: str) -> float:
        wanted = STARTED if to == "started" else (to,)
        return float(min(h.time for h in job.history if h.to_state.value in wanted))

    wall = max(at(j, "completed") for j in jobs) - began
    busy = sum(at(j, "completed") - at(j, "started") for j in jobs)
    return {
        "nodes": nodes,
        "wall_s": wall,
        "jobs_per_s": JOBS / wall,
        "audio_x": sum(j.audio_s for j in jobs) / wall,
        "overhead_s": max(0.0, wall * nodes * 4 - busy) / JOBS,
        "start_p50_ms": statistics.median(latency) * 1000,
        "start_max_ms": max(latency) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="scaling over scheduler nodes")
    parser.add_argument("--mode", choices=("ray", "store"), default="ray")
    parser.add_argument("--store", default=os.environ.get("VRAMSCRIBE_TEST_PG_URL"))
    parser.add_argument("--nodes", default="1,2,4")
    args = parser.parse_args(argv)
    if args.mode == "store" and not args.store:
        parser.error("give --store (a PostgreSQL URL) or set VRAMSCRIBE_TEST_PG_URL")
    tmp = Path(tempfile.mkdtemp(prefix="vramscribe-cluster-"))
    root = tmp / "audio"
    root.mkdir()
    for seconds in SECONDS:
        write_wav(root / f"a{seconds}.wav", seconds)
    counts = [int(n) for n in args.nodes.split(",")]
    if args.mode == "ray":
        rows = [measure_ray(n, tmp, root) for n in counts]
    else:
        rows = [measure(n, args.store, tmp, root) for n in counts]
    print(f"mode: {args.mode}")
    base = rows[0]["jobs_per_s"] / rows[0]["nodes"]
    mix = "/".join(map(str, SECONDS))
    print(f"{JOBS} jobs of {mix} s, fake engine {FAKE}, {os.cpu_count()} cores")
    print("nodes  wall s  jobs/s  audio x  efficiency  overhead s/job  start p50 ms  start max ms")
    for r in rows:
        eff = r["jobs_per_s"] / (r["nodes"] * base)
        print(
            f"{r['nodes']:>5}  {r['wall_s']:6.1f}  {r['jobs_per_s']:6.2f}  {r['audio_x']:7.1f}"
            f"  {eff:10.2f}  {r['overhead_s']:14.2f}  {r['start_p50_ms']:12.0f}"
            f"  {r['start_max_ms']:12.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
