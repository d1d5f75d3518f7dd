from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

TOKEN = "test-token-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    data_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc = _spawn(self.args, self.log)
        _wait_healthy(self.url, self.proc, self.log)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "vramscribe", "serve", *args],
        stdout=out,
        stderr=out,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service did not become ready: {log.read_text()[-3000:]}")


def start_service(tmp_path: Path, *extra: str, fake: dict[str, Any] | None = None) -> Service:
    port = free_port()
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--port", str(port), "--token", TOKEN, *extra]
    if fake is not None:
        args += ["--engine", "fake", "--fake-config", json.dumps(fake)]
    log = tmp_path / "service.log"
    proc = _spawn(args, log)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, proc, log)
    return Service(url, data, args, proc, log)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.terminate()
            try:
                s.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                s.proc.kill()
