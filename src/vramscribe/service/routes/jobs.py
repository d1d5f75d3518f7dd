"""Jobs: submit, list, show, cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Query, Request

from vramscribe.core.jobs import JobState
from vramscribe.service import retention
from vramscribe.service.contract import MAX_OFFSET, errors, job_request_body
from vramscribe.service.deps import Service, record_or_404
from vramscribe.service.intake import submit_request
from vramscribe.service.schemas import JobList, JobOut
from vramscribe.service.views import job_view

router = APIRouter(tags=["jobs"])


@router.post(
    "/v1/jobs",
    status_code=201,
    response_model=JobOut,
    response_model_exclude_unset=True,
    responses=errors(400, 403, 404, 413, 415, 422, 503),
    openapi_extra=job_request_body(),
)
async def create_job(request: Request, service: Service) -> JobOut:
    """Submit a job: multipart upload (field ``file``) or JSON naming a server-side path."""
    rec = await submit_request(request, service)
    return job_view(rec, None)


@router.get(
    "/v1/jobs", response_model=JobList, response_model_exclude_unset=True, responses=errors(422)
)
def list_jobs(
    service: Service,
    status: JobState | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> JobList:
    recs = service.store.list(status, limit, offset)
    return JobList(
        jobs=[job_view(r, service.live(r.id)) for r in recs],
        total=service.store.count(status),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    response_model_exclude_unset=True,
    responses=errors(404),
)
async def get_job(job_id: str, service: Service) -> JobOut:
    """One job. Read on the event loop: a keyed read is quicker than the thread pool's
    two hand-offs, which under a burst of submissions cost more than the read itself."""
    return job_view(record_or_404(service, job_id), service.live(job_id))


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    response_model_exclude_unset=True,
    responses=errors(404, 409),
)
async def cancel_job(
    job_id: str,
    service: Service,
    purge: bool = Query(False, description="Erase a finished job: its audio, outputs and record"),
) -> JobOut:
    """Cancel an active job, or with ``purge`` erase a finished one; 409 otherwise.

    A cancelled job is not erased: it stays readable, with its history, until
    it is purged (or its retention ends). A purged job is answered as it was,
    then is gone (404).
    """
    rec = record_or_404(service, job_id)
    live = service.live(job_id)
    status = live.job.state if live is not None else rec.status
    if purge:
        if not status.is_final:
            raise HTTPException(409, f"job {job_id} is {status.value}; cancel it before purging")
        await asyncio.to_thread(retention.purge, service, rec)
        return job_view(rec, None)
    if status.is_final:
        raise HTTPException(409, f"job {job_id} is already {status.value}; purge=true erases it")
    await asyncio.to_thread(service.cancel, job_id)
    return job_view(record_or_404(service, job_id), service.live(job_id))
