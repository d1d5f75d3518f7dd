"""The service in this process: the app, its lifespan, and an httpx client over ASGI.

No server and no subprocess: requests go straight into the ASGI app, and the
app's lifespan starts and stops the scheduler thread around the client. With
a shared fake GPU too small for the model, accepted jobs are rejected by the
planner at once, so no worker process is ever started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.service.app import create_app
from vramscribe.settings import MIB, RunSettings, ServiceConfig, service_run

TOKEN = "in-process-token"
TINY_GPU_MB = 1000.0
"""Smaller than any model: every accepted job fails at once as "can never fit"."""


def fake_config(folder: Path, total_mb: float = TINY_GPU_MB) -> tuple[str, dict[str, Any]]:
    """A shared fake GPU under ``folder``: the ``--device`` value and the fake engine's config."""
    gpu = SharedFakeDevice.create(folder / "gpu.json", total_mb=total_mb)
    return f"fake:{gpu.path}", {"device_path": str(gpu.path), "memory_mb": 1100, "speed_x": 50.0}


def service_config(folder: Path, **overrides: Any) -> ServiceConfig:
    folder.mkdir(parents=True, exist_ok=True)
    device, fake = fake_config(folder)
    base: dict[str, Any] = {
        "data_dir": folder / "data",
        "token": TOKEN,
        "model": "small",
        "max_upload_bytes": MIB,
        "engine": "fake",
        "fake_config": fake,
        "run": RunSettings(device=device, scheduler=service_run().scheduler),
    }
    return ServiceConfig(**{**base, **overrides})


@asynccontextmanager
async def serving(config: ServiceConfig) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a freshly created app, inside the app's lifespan."""
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://vramscribe", headers=headers) as c,
    ):
        yield c
