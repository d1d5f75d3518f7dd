"""The HTTP stack's own floor for bench/api_load.py: the same load on a do-nothing app.

    python bench/api_floor.py [--jobs 1000] [--clients 16]

Serves a FastAPI app with the service's two routes (``POST /v1/jobs`` keeps the
JSON body in a dict, ``GET /v1/jobs/{id}`` reads it back) under uvicorn, and
drives it with the same client loop as ``bench/api_load.py``: ``--clients``
threads, each submitting and then reading one job at a time. What the real
service spends beyond these numbers is its own work (probe, store, scheduler),
not HTTP's.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()
_jobs: dict[str, dict[str, Any]] = {}


@app.post("/v1/jobs", status_code=201)
async def submit(request: Request) -> JSONResponse:
    body = await request.json()
    job = {"id": uuid.uuid4().hex, "path": body["path"], "status": "queued"}
    _jobs[job["id"]] = job
    return JSONResponse(job, status_code=201)


@app.get("/v1/jobs/{job_id}")
def show(job_id: str) -> dict[str, Any]:
    return _jobs[job_id]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="load a do-nothing FastAPI app")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = str(Path(__file__).parent)
    cmd = [sys.executable, "-m", "uvicorn", "api_floor:app", "--app-dir", here,
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/openapi.json")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the app did not start") from None
                time.sleep(0.1)
        post_ms: list[float] = []
        get_ms: list[float] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = c.post("/v1/jobs", json={"path": "clip.wav"})
                    t1 = time.perf_counter()
                    c.get(f"/v1/jobs/{r.json()['id']}")
                    t2 = time.perf_counter()
                    with lock:
                        post_ms.append((t1 - t0) * 1000)
                        get_ms.append((t2 - t1) * 1000)

        server = psutil.Process(proc.pid)
        server_cpu0 = sum(server.cpu_times()[:2])
        cpu0 = time.process_time()
        started = time.perf_counter()
        per_client = [args.jobs // args.clients + (i < args.jobs % args.clients)
                      for i in range(args.clients)]  # fmt: skip
        threads = [threading.Thread(target=client, args=(n,)) for n in per_client]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        results = {
            "submissions_per_s": len(post_ms) / elapsed,
            "post_p50_ms": pct(post_ms, 0.50),
            "post_p99_ms": pct(post_ms, 0.99),
            "get_p50_ms": pct(get_ms, 0.50),
            "get_p99_ms": pct(get_ms, 0.99),
            "client_cpu_s": time.process_time() - cpu0,
            "server_cpu_s": sum(server.cpu_times()[:2]) - server_cpu0,
        }
        for k, v in results.items():
            print(f"{k:22} {v:10.2f}")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
