"""What the routes depend on: the scheduler, the bearer token, a job that must exist.

The dependencies are coroutines although they never wait: FastAPI runs a plain
function dependency on its thread pool, and every request paid two thread hops
(and the pool's queueing under load) just to read an attribute and compare a token.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from vramscribe.service.scheduler import SchedulerService
from vramscribe.store.records import JobRecord


async def service_of(request: Request) -> SchedulerService:
    service: SchedulerService = request.app.state.service
    return service


Service = Annotated[SchedulerService, Depends(service_of)]
"""A route parameter that receives the app's scheduler."""


async def require_token(request: Request, service: Service) -> None:
    """401 unless the request carries the service's token (header, or ``?token=``).

    The OpenAPI document declares both ways as security schemes
    (``service/contract.py``); the check itself is here, in constant time.
    """
    token = service.config.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    given = given or request.query_params.get("token", "")
    if not given:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "wrong token", {"WWW-Authenticate": "Bearer"})


def record_or_404(service: SchedulerService, job_id: str) -> JobRecord:
    rec = service.store.get(job_id)
    if rec is None:
        raise HTTPException(404, f"no job {job_id}")
    return rec
