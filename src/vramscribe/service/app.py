"""The HTTP API: jobs, transcripts, live events, devices, and OpenAI's transcription endpoint.

:func:`create_app` wires the pieces: the scheduler (started and stopped by the
app's lifespan), the upload limit, and the routers of ``service/routes/``,
every one but the health checks and the dashboard's HTML behind the token.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from vramscribe.service.contract import install_allow_handler, install_openapi
from vramscribe.service.deps import require_token
from vramscribe.service.limits import UploadLimit
from vramscribe.service.metrics import Metrics
from vramscribe.service.retention import Sweeper
from vramscribe.service.routes import batches, events, health, jobs, openai, transcripts, workbench
from vramscribe.service.scheduler import SchedulerService
from vramscribe.settings import ServiceConfig


def create_app(config: ServiceConfig) -> FastAPI:
    service = SchedulerService(config)
    app = FastAPI(
        title="vramscribe",
        description="Many Whisper transcription jobs at once on shared GPUs.",
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.metrics = Metrics(service)
    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    app.include_router(health.public)
    app.include_router(workbench.signed)  # signed per job instead of the token
    modules = (health, jobs, transcripts, events, openai, batches, workbench)
    routers = [module.router for module in modules]
    for router in routers:
        app.include_router(router, dependencies=[Depends(require_token)])
    install_allow_handler(app, [health.public, workbench.signed, *routers])
    install_openapi(app, health.public, workbench.signed)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: SchedulerService = app.state.service
    service.start()
    # What is alive now (modules, the app, the store's engine) lives as long as the
    # service: kept out of the collector's full passes, which otherwise walk it all
    # and paused every request for 40-90 ms every few seconds under load.
    gc.collect()
    gc.freeze()
    days = service.config.retain_days
    sweeper = Sweeper(service, days * 86400) if days else None
    if sweeper is not None:
        sweeper.start()
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.stop()
        # Uvicorn has stopped accepting connections (SIGTERM): let running jobs finish.
        await asyncio.to_thread(service.drain, service.config.drain_timeout_s)
        await asyncio.to_thread(service.stop)
        gc.unfreeze()  # a process that goes on (an embedding program, a test) collects again
