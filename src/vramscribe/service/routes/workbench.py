"""What the dashboard's workbench needs beyond the jobs API: a job's audio, retry, settings.

An ``<audio>`` element cannot send a bearer header, so a job's audio is
served at a URL signed for that job alone, valid for a short time:
``HMAC-SHA256(token, "job_id:expires")``. The URL reveals neither the token
nor anything about other jobs; the audio itself supports HTTP range requests
(``FileResponse``), which is what lets the player seek.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from vramscribe.core.jobs import JobState
from vramscribe.outputs import FORMATS
from vramscribe.service.deps import Service, record_or_404
from vramscribe.service.intake import submit_file
from vramscribe.service.scheduler import SchedulerService
from vramscribe.service.schemas import JobOut
from vramscribe.service.views import job_view
from vramscribe.submit.request import OPTION_FIELDS

router = APIRouter(tags=["workbench"])
"""Behind the bearer token."""

signed = APIRouter(tags=["workbench"])
"""No bearer token: the signature in the URL is the permission."""

AUDIO_URL_TTL_S = 3600
"""How long a signed audio URL works: long enough to listen to a long recording."""

_NO_TOKEN_KEY = secrets.token_bytes(32)
"""The signing key of a service without a token (URLs then last one process)."""


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The refusals an operation can answer with, for its OpenAPI description."""
    return {code: {"model": Problem} for code in codes}


_AUDIO_TYPES = {"audio/*": {"schema": {"type": "string", "format": "binary"}}}


class AudioUrl(BaseModel):
    url: str
    expires: int


class WorkbenchInfo(BaseModel):
    """What the page offers when submitting."""

    model: str
    formats: list[str]
    allowed_roots: list[str]


def sign(service: SchedulerService, job_id: str, expires: int) -> str:
    token = service.config.token
    key = token.encode() if token else _NO_TOKEN_KEY
    return hmac.new(key, f"{job_id}:{expires}".encode(), hashlib.sha256).hexdigest()


@router.get("/v1/workbench", response_model=WorkbenchInfo, responses=_problems(401))
def workbench(service: Service) -> WorkbenchInfo:
    config = service.config
    roots = [str(root) for root in config.allowed_roots]
    return WorkbenchInfo(model=config.model, formats=list(FORMATS), allowed_roots=roots)


@router.get("/v1/jobs/{job_id}/audio-url", response_model=AudioUrl, responses=_problems(401, 404))
def audio_url(job_id: str, service: Service) -> AudioUrl:
    """A URL that plays this job's audio without the token, for an hour."""
    record_or_404(service, job_id)
    expires = int(time.time()) + AUDIO_URL_TTL_S
    sig = sign(service, job_id, expires)
    return AudioUrl(url=f"/v1/jobs/{job_id}/audio?expires={expires}&sig={sig}", expires=expires)


@signed.get(
    "/v1/jobs/{job_id}/audio",
    response_class=FileResponse,
    responses={
        200: {"content": _AUDIO_TYPES, "description": "The whole file."},
        206: {"content": _AUDIO_TYPES, "description": "The byte range asked for."},
        416: {"description": "A range outside the file."},
        **_problems(403, 404, 410),
    },
)
def audio(
    job_id: str,
    service: Service,
    expires: int = Query(..., ge=0, le=2**63 - 1),
    sig: str = Query(..., max_length=128),
) -> FileResponse:
    """The job's audio, as submitted; ``Range`` requests are answered with 206."""
    # Bytes: a signature with characters beyond ASCII is simply wrong, not an error.
    if not hmac.compare_digest(sig.encode(), sign(service, job_id, expires).encode()):
        raise HTTPException(403, "bad signature")
    if expires < time.time():
        raise HTTPException(403, "this audio URL has expired; ask for a new one")
    rec = record_or_404(service, job_id)
    path = Path(rec.input_path)
    if not path.is_file():
        raise HTTPException(410, f"the audio of job {job_id} is no longer kept")
    return FileResponse(path, filename=rec.filename or path.name, content_disposition_type="inline")


@router.post(
    "/v1/jobs/{job_id}/retry",
    status_code=201,
    response_model=JobOut,
    responses=_problems(400, 401, 404, 409, 410, 415),
)
async def retry(job_id: str, service: Service) -> JobOut:
    """A new job with the same audio and options as a job that failed or was cancelled."""
    rec = record_or_404(service, job_id)
    live = service.live(job_id)  # the scheduler's state may be a moment ahead of the store's
    status = live.job.state if live is not None else rec.status
    if status not in (JobState.FAILED, JobState.CANCELLED):
        raise HTTPException(409, f"job {job_id} is {status.value}; only ended jobs are retried")
    path = Path(rec.input_path)
    if not path.is_file():
        raise HTTPException(410, f"the audio of job {job_id} is no longer kept")
    fields = {k: v for k, v in rec.options.items() if k in OPTION_FIELDS}
    fields.update(model=rec.model, priority=rec.priority)
    new = await submit_file(service, path, fields, keep_source=True, filename=rec.filename)
    return job_view(new, None)
