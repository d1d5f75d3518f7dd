"""Jobs: submit, list, show, cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request

from vramscribe.core.jobs import JobState
from vramscribe.service.deps import Service, record_or_404
from vramscribe.service.intake import submit_request
from vramscribe.service.schemas import JobList, JobOut
from vramscribe.service.views import job_view

router = APIRouter(tags=["jobs"])


@router.post("/v1/jobs", status_code=201, response_model=JobOut, response_model_exclude_unset=True)
async def create_job(request: Request, service: Service) -> JobOut:
    """Submit a job: multipart upload (field ``file``) or JSON naming a server-side path."""
    rec = await submit_request(request, service)
    return job_view(rec, None)


@router.get("/v1/jobs", response_model=JobList, response_model_exclude_unset=True)
def list_jobs(
    service: Service,
    status: JobState | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> JobList:
    recs = service.store.list(status, limit, offset)
    return JobList(
        jobs=[job_view(r, service.live(r.id)) for r in recs],
        total=service.store.count(status),
        limit=limit,
        offset=offset,
    )


@router.get("/v1/jobs/{job_id}", response_model=JobOut, response_model_exclude_unset=True)
def get_job(job_id: str, service: Service) -> JobOut:
    return job_view(record_or_404(service, job_id), service.live(job_id))


@router.delete("/v1/jobs/{job_id}", response_model=JobOut, response_model_exclude_unset=True)
async def cancel_job(job_id: str, service: Service) -> JobOut:
    rec = record_or_404(service, job_id)
    if not rec.status.is_final:
        await asyncio.to_thread(service.cancel, job_id)
    return job_view(record_or_404(service, job_id), service.live(job_id))
