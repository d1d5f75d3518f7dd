"""New jobs from HTTP requests: an upload or a server-side path, read into a JobRequest.

The request is checked and the job submitted by the same code the CLI uses
(:class:`~vramscribe.submit.request.JobRequest`, :meth:`~vramscribe.submit.run.Run.submit`);
this module only reads the HTTP side and turns refusals into status codes:
422 for a bad option, 400 for an unknown model, 415 for input that is not
audio. A refused upload is deleted; only accepted jobs keep their audio.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from fastapi import HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from vramscribe.errors import (
    BadInput,
    InputNotFound,
    InvalidRequest,
    ModelNotAvailable,
    UnknownModel,
    VramscribeError,
)
from vramscribe.outputs import FORMATS
from vramscribe.service.paths import resolve_allowed
from vramscribe.service.scheduler import SchedulerService
from vramscribe.service.schemas import JobByPath
from vramscribe.service.webhooks import valid_url
from vramscribe.store.records import JobRecord
from vramscribe.submit.request import ALL_FIELDS, JobRequest, new_job_id

_SUFFIX = re.compile(r"\.[a-z0-9]{1,6}")
_COPY_CHUNK = 1024 * 1024


async def submit_request(request: Request, service: SchedulerService) -> JobRecord:
    """``POST /v1/jobs``: multipart with a ``file``, or JSON naming a ``path``."""
    refuse_while_draining(service)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        try:
            callback = callback_url(form.get("callback_url"))
            source, filename = await save_upload(form, service.uploads)
            fields = {k: v for k, v in form.items() if k in ALL_FIELDS and isinstance(v, str)}
        finally:
            await form.close()
        rec = await submit_file(service, source, fields, filename=filename)
    elif ctype.startswith("application/json"):
        body = read_job_by_path(await request.body())
        callback = callback_url(body.callback_url)
        source = resolve_allowed(body.path, service.config.allowed_roots)
        rec = await submit_file(service, source, body.options(), keep_source=True)
    else:
        raise HTTPException(415, "send multipart/form-data (field 'file') or JSON with 'path'")
    if callback:
        await asyncio.to_thread(service.webhooks.register, rec, callback)
    return rec


def callback_url(value: object) -> str | None:
    """A job's ``callback_url``: None when not given, 422 unless an http(s) URL."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not valid_url(value):
        raise HTTPException(422, f"callback_url must be an http or https URL, got {value!r}")
    return value


def refuse_while_draining(service: SchedulerService) -> None:
    if service.draining:
        raise HTTPException(503, "the service is shutting down; submit again after its restart")


async def save_upload(form: FormData, uploads: Path) -> tuple[Path, str]:
    """Save the form's ``file`` under ``uploads``; returns where, and the client's name for it."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, "multipart field 'file' with the audio is required")
    return await save_file(upload, uploads)


async def save_file(upload: UploadFile, uploads: Path) -> tuple[Path, str]:
    """Save one uploaded file under ``uploads``; returns where, and the client's name for it."""
    suffix = Path(upload.filename or "").suffix.lower()
    suffix = suffix if _SUFFIX.fullmatch(suffix) else ".bin"
    target = uploads / f"{uuid.uuid4().hex}{suffix}"

    def copy() -> None:
        with target.open("wb") as out:
            shutil.copyfileobj(upload.file, out, _COPY_CHUNK)

    await asyncio.to_thread(copy)
    return target, Path(upload.filename or target.name).name[:255]


def read_job_by_path(raw: bytes) -> JobByPath:
    """The JSON body of a job by path; 400 if it is not JSON, 422 if it is the wrong shape."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"invalid JSON: {exc}") from None
    try:
        return JobByPath.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(422, _shape_error(exc)) from None


async def submit_file(
    service: SchedulerService,
    source: Path,
    fields: Mapping[str, object],
    *,
    keep_source: bool = False,
    filename: str | None = None,
) -> JobRecord:
    """Check the options, then submit the job on the service's submission thread."""
    try:
        (outcome,) = await service.submissions.submit(
            [job_request(service, source, fields, filename)]
        )
    except VramscribeError as exc:
        outcome = exc
    if isinstance(outcome, JobRecord):
        return outcome
    if not keep_source:
        source.unlink(missing_ok=True)
    raise refusal(outcome) if isinstance(outcome, VramscribeError) else outcome


def job_request(
    service: SchedulerService, source: Path, fields: Mapping[str, object], filename: str | None
) -> JobRequest:
    """The request for one file with the service's defaults; InvalidRequest names a bad field."""
    job_id = new_job_id()
    config = service.config
    return JobRequest.parse(
        fields,
        input=source,
        model=config.model,
        engine=config.engine,
        fake=config.fake_config,
        outputs=tuple((fmt, service.transcripts / f"{job_id}.{fmt}") for fmt in FORMATS),
        filename=filename,
        job_id=job_id,
    )


def refusal(exc: VramscribeError) -> Exception:
    """The HTTP answer to a request the submit path refused (others pass through)."""
    if isinstance(exc, InvalidRequest):
        return HTTPException(422, str(exc))
    if isinstance(exc, UnknownModel):
        return HTTPException(400, str(exc))
    if isinstance(exc, ModelNotAvailable):
        return HTTPException(400, f"unknown or unavailable model: {exc}")
    if isinstance(exc, BadInput | InputNotFound):
        return HTTPException(415, f"not usable audio: {exc}")
    return exc


def _shape_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if any(e["type"] == "model_type" or e["loc"][:1] == ("path",) for e in errors):
        return 'JSON body must be an object with a string "path"'
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown fields: {', '.join(unknown)}"
    first = errors[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
