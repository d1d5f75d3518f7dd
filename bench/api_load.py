"""Load the service's API: many submissions from concurrent clients, then wait for all.

    python bench/api_load.py [--jobs 2000] [--clients 16] [--json PATH] [--profile PATH]

Starts ``vramscribe serve`` on loopback with the fake engine on a shared fake
GPU (fast jobs), submits server-side paths from ``--clients`` threads, reads
each job back once, prints submissions per second and p50/p99 latency of
``POST /v1/jobs`` and ``GET /v1/jobs/{id}``, then waits until every job has
finished and checks that all of them exist and completed. The load generator's
own CPU time (``client_cpu_s``; ``client_cpu_pct`` of the submission phase) and
the service's (``server_cpu_s``) during submission are printed too: on a small
machine the clients compete with the service for the same cores.

``--profile PATH`` samples the service with py-spy during the submission phase
(raw collapsed stacks, one per line, with their sample counts) and prints where
its time went, grouped by what the stack was doing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import httpx
import psutil

TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


PROFILE_RATE = 100
"""py-spy's samples per second: a phase's samples over this are seconds it held the GIL."""


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (all its threads, idle ones left out) into ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # --gil: only the thread holding the GIL is sampled, so shares are of Python's CPU time.
    cmd = [spy, "record", "-p", str(pid), "-r", str(PROFILE_RATE), "-f", "raw", "-o", str(out),
           "--nonblocking", "--gil", "-d", "3600"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PHASES = (
    ("submit: probe audio", ("probe_duration",)),
    ("submit: store", ("GroupCommit", "Leases.add")),
    ("submit: other", ("submit_file", "SubmitThread")),
    ("scheduler thread", ("Runner.run_until",)),
    ("timeline writer", ("Timeline._write",)),
    ("sync routes (GET)", ("run_endpoint_function",)),
    ("thread-pool hand-offs", ("WorkerThread.run", "concurrent/futures/thread.py")),
    ("event loop (HTTP, FastAPI)", ("run_forever",)),
)
"""Where a sampled stack counts: the first phase one of its frames names, in this order."""


def print_profile(path: Path) -> None:
    """The share of the service's samples per phase (see :data:`PHASES`)."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            phase = next((p for p, keys in PHASES if any(k in stack for k in keys)), "other")
            counts[phase] = counts.get(phase, 0) + int(n)
    total = max(sum(counts.values()), 1)
    for phase, samples in sorted(counts.items(), key=lambda kv: -kv[1]):
        seconds = samples / PROFILE_RATE
        print(f"profile {phase:28} {100 * samples / total:5.1f}% {seconds:6.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="load the service API")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--profile", type=Path, help="py-spy the service while submitting")
    args = parser.parse_args(argv)

    from vramscribe.devices.shared_fake import SharedFakeDevice

    tmp = Path(tempfile.mkdtemp(prefix="vramscribe-load-"))
    root = tmp / "audio"
    root.mkdir()
    with wave.open(str(root / "clip.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    gpu = SharedFakeDevice.create(tmp / "gpu.json", total_mb=80_000)
    fake = {"device_path": str(gpu.path), "memory_mb": 600, "speed_x": 100.0, "load_s": 0.0}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "vramscribe", "serve", "--data-dir", str(tmp / "data"),
        "--port", str(port), "--token", TOKEN, "--allowed-root", str(root),
        "--device", f"fake:{gpu.path}", "--model", "tiny", "--engine", "fake",
        "--fake-config", json.dumps(fake), "--max-instances", "8",
    ]  # fmt: skip
    log = (tmp / "service.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("service did not start")
            time.sleep(0.2)

        post_ms: list[float] = []
        get_ms: list[float] = []
        ids: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        per_client = [args.jobs // args.clients + (i < args.jobs % args.clients)
                      for i in range(args.clients)]  # fmt: skip

        def client(n: int) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = c.post("/v1/jobs", json={"path": "clip.wav"})
                    t1 = time.perf_counter()
                    if r.status_code != 201:
                        with lock:
                            errors.append(r.text)
                        continue
                    job_id = r.json()["id"]
                    t2 = time.perf_counter()
                    g = c.get(f"/v1/jobs/{job_id}")
                    t3 = time.perf_counter()
                    with lock:
                        post_ms.append((t1 - t0) * 1000)
                        if g.status_code == 200:
                            get_ms.append((t3 - t2) * 1000)
                        ids.append(job_id)

        cpu0 = time.process_time()
        server = psutil.Process(proc.pid)
        server_cpu0 = sum(server.cpu_times()[:2])
        spy = start_profile(proc.pid, args.profile) if args.profile else None
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submit_s = time.perf_counter() - started
        client_cpu_s = time.process_time() - cpu0
        server_cpu_s = sum(server.cpu_times()[:2]) - server_cpu0
        if spy is not None and args.profile is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            print_profile(args.profile)

        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            deadline = time.monotonic() + args.timeout
            while True:
                done = sum(c.get("/v1/jobs", params={"status": s, "limit": 1}).json()["total"]
                           for s in ("completed", "failed", "cancelled"))  # fmt: skip
                if done >= len(ids) or time.monotonic() > deadline:
                    break
                time.sleep(2)
            drain_s = time.perf_counter() - started
            total = c.get("/v1/jobs", params={"limit": 1}).json()["total"]
            completed = c.get("/v1/jobs", params={"status": "completed", "limit": 1}).json()[
                "total"
            ]
        results = {
            "submissions": len(ids),
            "errors": len(errors),
            "submissions_per_s": len(ids) / submit_s,
            "post_p50_ms": pct(post_ms, 0.50),
            "post_p99_ms": pct(post_ms, 0.99),
            "get_p50_ms": pct(get_ms, 0.50),
            "get_p99_ms": pct(get_ms, 0.99),
            "post_mean_ms": statistics.fmean(post_ms),
            "client_cpu_s": client_cpu_s,
            "client_cpu_pct": 100 * client_cpu_s / submit_s,
            "server_cpu_s": server_cpu_s,
            "jobs_in_store": total,
            "jobs_completed": completed,
            "all_done_after_s": drain_s,
        }
        for k, v in results.items():
            print(f"{k:22} {v:10.2f}" if isinstance(v, float) else f"{k:22} {v:10d}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2))
        ok = total == args.jobs and completed == args.jobs and not errors
        print("OK: every job exists and completed" if ok else "NOT OK")
        return 0 if ok else 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
