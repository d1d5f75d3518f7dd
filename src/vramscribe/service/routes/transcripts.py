"""Transcripts of completed jobs, in any of the formats every job writes."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from vramscribe.core.jobs import JobState
from vramscribe.service.contract import TRANSCRIPT_JSON, errors, text_body
from vramscribe.service.deps import Service, record_or_404

router = APIRouter(tags=["jobs"])

MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}


@router.get(
    "/v1/jobs/{job_id}/transcript",
    response_class=Response,
    responses={
        200: text_body(*list(MEDIA_TYPES.values())[:-1], json=TRANSCRIPT_JSON),
        **errors(404, 409, 422),
    },
)
def transcript(
    job_id: str, service: Service, format: str = Query("txt", pattern="^(txt|srt|vtt|json)$")
) -> Response:
    rec = record_or_404(service, job_id)
    live = service.live(job_id)
    status = live.job.state if live is not None else rec.status
    if status is not JobState.COMPLETED:
        raise HTTPException(409, f"job {job_id} is {status.value}; no transcript yet")
    path = dict(rec.outputs)[format]
    return Response(Path(path).read_text(), media_type=MEDIA_TYPES[format])
