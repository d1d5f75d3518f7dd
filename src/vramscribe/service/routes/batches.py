"""Batch submission: many files or paths in one request, one result per file.

A client that submits a folder sends it at once instead of waiting on one
request per file: the files are checked and probed on the service's submission
thread (``service/submissions.py``) and their jobs stored in one transaction.
Each file is answered on its own, with the status a single submission would
have had; a bad file fails alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from vramscribe.errors import InvalidRequest, VramscribeError
from vramscribe.service.contract import MEANINGS, ErrorOut, batch_request_body, errors
from vramscribe.service.deps import Service
from vramscribe.service.intake import (
    callback_url,
    job_request,
    refusal,
    refuse_while_draining,
    save_file,
)
from vramscribe.service.paths import resolve_allowed
from vramscribe.service.scheduler import SchedulerService
from vramscribe.service.schemas import MAX_BATCH, BatchItemOut, BatchOut, JobsByPath
from vramscribe.service.views import job_view
from vramscribe.submit.request import OPTION_FIELDS, JobRequest

router = APIRouter(tags=["jobs"])

_ALL_REFUSED: dict[int | str, dict[str, Any]] = {
    code: {
        "model": ErrorOut | BatchOut,
        "description": f"{MEANINGS[code]} (for every file: the per-file results)",
    }
    for code in (400, 403, 404, 415, 422)
}

Item = tuple[str, Path | HTTPException, bool]
"""A file as sent (its name), where it is (or why it cannot be used), whether it is ours."""


@router.post(
    "/v1/batches",
    response_model=BatchOut,
    response_model_exclude_none=True,
    responses={**errors(413, 503), **_ALL_REFUSED},
    openapi_extra=batch_request_body(),
)
async def create_batch(request: Request, service: Service) -> BatchOut | JSONResponse:
    """Submit several files (multipart, repeated field ``file``) or paths (JSON ``paths``).

    200 when at least one file made a job; when none did, the status their
    refusals share (400 if they differ), with the same per-file body.
    """
    refuse_while_draining(service)
    ctype = request.headers.get("content-type", "")
    fields: Mapping[str, object]
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        try:
            uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
            if not uploads or len(uploads) > MAX_BATCH:
                raise HTTPException(422, f"send 1 to {MAX_BATCH} files in the field 'file'")
            items: list[Item] = []
            for upload in uploads:
                source, name = await save_file(upload, service.uploads)
                items.append((name, source, True))
            fields = _form_options(form)
            callback = callback_url(form.get("callback_url"))
        finally:
            await form.close()
    elif ctype.startswith("application/json"):
        body = _read_paths(await request.body())
        items = [(raw, _resolve(raw, service), False) for raw in body.paths]
        fields = body.options()
        callback = callback_url(body.callback_url)
    else:
        raise HTTPException(415, "send multipart/form-data (field 'file') or JSON with 'paths'")
    _check_options(service, fields, items)
    results = await submit_items(service, items, fields)
    if callback:
        for result in results:
            if result.job is not None:
                rec = service.store.get(result.job.id, with_history=False)
                if rec is not None:
                    await asyncio.to_thread(service.webhooks.register, rec, callback)
    accepted = sum(r.status == 201 for r in results)
    out = BatchOut(accepted=accepted, refused=len(results) - accepted, results=results)
    if accepted:
        return out
    # Nothing was accepted: the request as a whole failed, for the reason its files share.
    shared = {r.status for r in results}
    status = shared.pop() if len(shared) == 1 else 400
    return JSONResponse(out.model_dump(mode="json", exclude_none=True), status)


async def submit_items(
    service: SchedulerService, items: list[Item], fields: Mapping[str, object]
) -> list[BatchItemOut]:
    """Check every file's request, then submit the good ones together."""
    answers: list[BatchItemOut | None] = []
    requests: list[JobRequest] = []
    for name, where, _ in items:
        if isinstance(where, HTTPException):
            answers.append(BatchItemOut(input=name, status=where.status_code, error=where.detail))
            continue
        try:
            requests.append(job_request(service, where, fields, name))
            answers.append(None)
        except VramscribeError as exc:
            answers.append(_refused(name, exc))
    outcomes = iter(await service.submissions.submit(requests) if requests else [])
    results = []
    for (name, where, ours), answer in zip(items, answers, strict=True):
        if answer is None:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                answer = _refused(name, outcome)
            else:
                answer = BatchItemOut(input=name, status=201, job=job_view(outcome, None))
        if answer.status != 201 and ours and isinstance(where, Path):
            where.unlink(missing_ok=True)
        results.append(answer)
    return results


def _form_options(form: FormData) -> dict[str, str]:
    """The options of a multipart batch; each may be given once (422 otherwise)."""
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if key not in OPTION_FIELDS:
            continue
        if key in fields or not isinstance(value, str):
            raise HTTPException(422, f"{key}: give it once, as text")
        fields[key] = value
    return fields


def _check_options(
    service: SchedulerService, fields: Mapping[str, object], items: list[Item]
) -> None:
    """The options are the whole request's: a bad one refuses it all (422), uploads deleted."""
    try:
        job_request(service, Path("options"), fields, None)
    except InvalidRequest as exc:
        for _, where, ours in items:
            if ours and isinstance(where, Path):
                where.unlink(missing_ok=True)
        raise HTTPException(422, str(exc)) from None


def _refused(name: str, exc: Exception) -> BatchItemOut:
    answer = refusal(exc) if isinstance(exc, VramscribeError) else exc
    if isinstance(answer, HTTPException):
        return BatchItemOut(input=name, status=answer.status_code, error=str(answer.detail))
    return BatchItemOut(input=name, status=500, error=str(exc))


def _resolve(raw: str, service: SchedulerService) -> Path | HTTPException:
    try:
        return resolve_allowed(raw, service.config.allowed_roots)
    except HTTPException as exc:
        return exc


def _read_paths(raw: bytes) -> JobsByPath:
    """The JSON body; 400 if it is not JSON, 422 if its shape (or a path's) is wrong."""
    try:
        body = JobsByPath.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"invalid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise HTTPException(422, f"{where}: {first['msg']}") from None
    if any(not path or "\0" in path for path in body.paths):
        raise HTTPException(422, "paths: every path must be a non-empty string without NUL")
    return body
