"""Server-sent events: every job's, or one job's until it ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from vramscribe.core.jobs import JobState
from vramscribe.service.contract import SSE_EVENT, errors
from vramscribe.service.deps import Service, record_or_404
from vramscribe.service.scheduler import SchedulerService
from vramscribe.service.views import job_json

router = APIRouter(tags=["events"])

FINAL = {s.value for s in JobState if s.is_final}
KEEP_ALIVE_S = 10.0
SSE = "text/event-stream"
_STREAM = {"description": "Server-sent events", "content": {SSE: {"schema": SSE_EVENT}}}


@router.get("/v1/events", response_class=StreamingResponse, responses={200: _STREAM, **errors()})
def all_events(request: Request, service: Service) -> StreamingResponse:
    """Server-sent events for every job: state changes, progress, segments."""
    return StreamingResponse(stream(request, service, None), media_type=SSE)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: _STREAM, **errors(404)},
)
def job_events(request: Request, job_id: str, service: Service) -> StreamingResponse:
    """Server-sent events for one job; the stream ends when the job does."""
    record_or_404(service, job_id)
    return StreamingResponse(stream(request, service, job_id), media_type=SSE)


async def stream(
    request: Request, service: SchedulerService, job_id: str | None
) -> AsyncIterator[str]:
    queue = service.events.subscribe()
    try:
        if job_id is not None:
            snapshot = job_json(record_or_404(service, job_id), service.live(job_id))
            yield sse(
                "job",
                {"type": "job", "job_id": job_id, "state": snapshot["status"], "job": snapshot},
            )
            if snapshot["status"] in FINAL:
                return
        while not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if job_id is not None and event.get("job_id") != job_id:
                continue
            yield sse(str(event.get("type", "message")), event)
            if job_id is not None and event.get("type") == "job" and event.get("state") in FINAL:
                return
    finally:
        service.events.unsubscribe(queue)


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
