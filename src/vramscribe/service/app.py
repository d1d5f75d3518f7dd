"""The HTTP API: jobs, transcripts, live events, devices, and OpenAI's transcription endpoint."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import FormData, UploadFile

from vramscribe.audio import probe_duration
from vramscribe.core.jobs import Job, JobState, parse_priority
from vramscribe.core.observe import Tracked
from vramscribe.core.profiles import profile_for
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import BadInput, InputNotFound, ModelNotAvailable
from vramscribe.models import resolve_model
from vramscribe.outputs import FORMATS, render
from vramscribe.runtime.persist import record_for
from vramscribe.runtime.runner import Task
from vramscribe.service.config import ServiceConfig
from vramscribe.service.limits import UploadLimit
from vramscribe.service.metrics import Metrics
from vramscribe.service.paths import resolve_allowed
from vramscribe.service.scheduler import SchedulerService
from vramscribe.store.store import JobRecord
from vramscribe.transcript import Transcript

MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}
OPTION_FIELDS = (
    "model", "language", "priority", "beam_size", "vad_filter", "word_timestamps",
    "initial_prompt", "hotwords", "compute_type", "batch_size",
)  # fmt: skip
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float16", "float16", "float32")
FINAL = {s.value for s in JobState if s.is_final}


def job_json(rec: JobRecord, live: Task | None) -> dict[str, Any]:
    status = live.job.state if live is not None else rec.status
    progress = live.progress_s if live is not None else rec.progress_s
    audio = rec.audio_s or 0.0
    out: dict[str, Any] = {
        "id": rec.id,
        "status": status.value,
        "model": rec.model,
        "priority": rec.priority,
        "audio_s": audio,
        "progress_s": progress,
        "progress": min(1.0, progress / audio) if audio else 0.0,
        "attempts": live.job.attempts if live is not None else rec.attempts,
        "error": (live.job.error if live is not None else None) or rec.error,
        "pending_reason": (live.pending_reason if live is not None else rec.pending_reason)
        if status is JobState.PENDING
        else None,
        "device": (live.device_id if live is not None else None) or rec.device_id,
        "input": str(rec.options.get("filename") or Path(rec.input_path).name),
        "submitted_at": rec.submitted_at,
        "finished_at": rec.finished_at,
        "history": [
            {"time": t.time, "from": t.from_state.value, "to": t.to_state.value, "reason": t.reason}
            for t in (live.job.history if live is not None else rec.history)
        ],
    }
    if live is not None:
        out["timings"] = {
            "wait_s": live.wait_s,
            "load_s": live.load_s,
            "transcribe_s": live.transcribe_s,
        }
    return out


def create_app(config: ServiceConfig) -> FastAPI:
    service = SchedulerService(config)
    uploads = config.data_dir / "uploads"
    transcripts = config.data_dir / "transcripts"
    uploads.mkdir(parents=True, exist_ok=True)
    transcripts.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    def require_token(request: Request) -> None:
        if not config.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        given = given or request.query_params.get("token", "")
        if not given:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(401, "wrong token", {"WWW-Authenticate": "Bearer"})

    app = FastAPI(
        title="vramscribe",
        description="Many Whisper transcription jobs at once on shared GPUs.",
        lifespan=lifespan,
        dependencies=[],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    metrics = Metrics(service)
    app.add_middleware(UploadLimit, max_bytes=config.max_upload_bytes)
    api = APIRouter(dependencies=[Depends(require_token)])

    # -- health ------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        try:
            service.store.count()
        except Exception as exc:
            return JSONResponse({"status": "store unavailable", "detail": str(exc)}, 503)
        if not service.alive:
            return JSONResponse({"status": "scheduler not running"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        """The live dashboard; the page asks for the token itself (the HTML holds no data)."""
        html = resources.files("vramscribe.service").joinpath("static/dashboard.html")
        return Response(html.read_text(), media_type="text/html; charset=utf-8")

    # -- docs (behind the token like everything else) ----------------------------------
    @api.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @api.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        token = request.query_params.get("token")
        url = "/openapi.json" + (f"?token={token}" if token else "")
        return get_swagger_ui_html(openapi_url=url, title="vramscribe API")

    # -- jobs --------------------------------------------------------------------------
    def build_record(source: Path, opts: dict[str, Any], keep_source: bool) -> JobRecord:
        """Validate options and the audio; raise 4xx on anything wrong. Runs in a thread."""
        try:
            priority = parse_priority(opts.get("priority", "normal"))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        model = str(opts.get("model") or config.model)
        compute_type = str(opts.get("compute_type") or "default")
        if compute_type not in COMPUTE_TYPES:
            raise HTTPException(422, f"compute_type must be one of {', '.join(COMPUTE_TYPES)}")
        try:
            beam_size = int(opts.get("beam_size") or 5)
            raw_batch = str(opts.get("batch_size") or "auto").strip().lower()
            batch_size = 0 if raw_batch == "auto" else int(raw_batch)
        except (TypeError, ValueError):
            raise HTTPException(422, "beam_size and batch_size must be integers") from None
        if not 1 <= beam_size <= 20 or not 0 <= batch_size <= 64:
            raise HTTPException(422, "beam_size must be 1-20 and batch_size auto or 1-64")
        if config.engine == "fake":
            if profile_for(model) is None:
                raise HTTPException(400, f"unknown model {model!r}")
            model_path, profile = model, model
        else:
            try:
                resolved = resolve_model(model)
            except ModelNotAvailable as exc:
                raise HTTPException(400, f"unknown or unavailable model: {exc}") from None
            model_path, profile = resolved.path, resolved.profile_name or model
        try:
            audio_s = probe_duration(source)
        except (BadInput, InputNotFound) as exc:
            if not keep_source:
                source.unlink(missing_ok=True)
            raise HTTPException(415, f"not usable audio: {exc}") from None
        job_id = uuid.uuid4().hex[:16]
        engine = EngineOptions(
            engine=config.engine,
            model=model,
            model_path=model_path,
            compute_type=compute_type,
            batch_size=batch_size,
            cpu_threads=config.cpu_threads,
            language=opts.get("language") or None,
            beam_size=beam_size,
            vad_filter=_truthy(opts.get("vad_filter")),
            word_timestamps=_truthy(opts.get("word_timestamps")),
            initial_prompt=opts.get("initial_prompt") or None,
            hotwords=opts.get("hotwords") or None,
            fake=dict(config.fake_config),
        )
        now = time.time()
        job = Job(job_id, profile, audio_s, priority, now, compute_type, batch_size)
        outputs = [(fmt, transcripts / f"{job_id}.{fmt}") for fmt in FORMATS]
        filename = str(opts.get("filename") or source.name)
        return record_for(Task(job, source, engine, outputs), now, model, filename=filename)

    async def save_upload(form: FormData) -> tuple[Path, dict[str, Any]]:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "multipart field 'file' with the audio is required")
        suffix = Path(upload.filename or "").suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ".bin"
        target = uploads / f"{uuid.uuid4().hex}{suffix}"

        def copy() -> None:
            with target.open("wb") as out:
                shutil.copyfileobj(upload.file, out, 1024 * 1024)

        await asyncio.to_thread(copy)
        opts = {k: v for k, v in form.items() if k in OPTION_FIELDS and isinstance(v, str)}
        opts["filename"] = Path(upload.filename or target.name).name[:255]
        return target, opts

    async def submit_request(request: Request) -> JobRecord:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            try:
                source, opts = await save_upload(form)
            finally:
                await form.close()
            rec = await asyncio.to_thread(build_record, source, opts, False)
        elif ctype.startswith("application/json"):
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise HTTPException(400, f"invalid JSON: {exc}") from None
            if not isinstance(body, dict) or not isinstance(body.get("path"), str):
                raise HTTPException(422, 'JSON body must be an object with a string "path"')
            unknown = set(body) - {"path", *OPTION_FIELDS}
            if unknown:
                raise HTTPException(422, f"unknown fields: {', '.join(sorted(unknown))}")
            source = resolve_allowed(body["path"], config.allowed_roots)
            rec = await asyncio.to_thread(build_record, source, body, True)
        else:
            raise HTTPException(415, "send multipart/form-data (field 'file') or JSON with 'path'")
        return await asyncio.to_thread(service.submit, rec)

    def get_record(job_id: str) -> JobRecord:
        rec = service.store.get(job_id)
        if rec is None:
            raise HTTPException(404, f"no job {job_id}")
        return rec

    @api.post("/v1/jobs", status_code=201, tags=["jobs"])
    async def create_job(request: Request) -> dict[str, Any]:
        """Submit a job: multipart upload (field ``file``) or JSON naming a server-side path."""
        rec = await submit_request(request)
        return job_json(rec, None)

    @api.get("/v1/jobs", tags=["jobs"])
    def list_jobs(
        status: JobState | None = None,
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        recs = service.store.list(status, limit, offset)
        return {
            "jobs": [job_json(r, service.live(r.id)) for r in recs],
            "total": service.store.count(status),
            "limit": limit,
            "offset": offset,
        }

    @api.get("/v1/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str) -> dict[str, Any]:
        return job_json(get_record(job_id), service.live(job_id))

    @api.delete("/v1/jobs/{job_id}", tags=["jobs"])
    async def cancel_job(job_id: str) -> dict[str, Any]:
        rec = get_record(job_id)
        if not rec.status.is_final:
            await asyncio.to_thread(service.cancel, job_id)
        return job_json(get_record(job_id), service.live(job_id))

    @api.get("/v1/jobs/{job_id}/transcript", tags=["jobs"])
    def transcript(
        job_id: str, format: str = Query("txt", pattern="^(txt|srt|vtt|json)$")
    ) -> Response:
        rec = get_record(job_id)
        live = service.live(job_id)
        status = live.job.state if live is not None else rec.status
        if status is not JobState.COMPLETED:
            raise HTTPException(409, f"job {job_id} is {status.value}; no transcript yet")
        path = dict(rec.outputs)[format]
        return Response(Path(path).read_text(), media_type=MEDIA_TYPES[format])

    async def stream(request: Request, job_id: str | None) -> AsyncIterator[str]:
        queue = service.events.subscribe()
        try:
            if job_id is not None:
                snapshot = job_json(get_record(job_id), service.live(job_id))
                yield _sse(
                    "job",
                    {"type": "job", "job_id": job_id, "state": snapshot["status"], "job": snapshot},
                )
                if snapshot["status"] in FINAL:
                    return
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), 10.0)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if job_id is not None and event.get("job_id") != job_id:
                    continue
                yield _sse(str(event.get("type", "message")), event)
                if (
                    job_id is not None
                    and event.get("type") == "job"
                    and event.get("state") in FINAL
                ):
                    return
        finally:
            service.events.unsubscribe(queue)

    @api.get("/v1/events", tags=["events"])
    def all_events(request: Request) -> StreamingResponse:
        """Server-sent events for every job: state changes, progress, segments."""
        return StreamingResponse(stream(request, None), media_type="text/event-stream")

    @api.get("/v1/jobs/{job_id}/events", tags=["events"])
    def job_events(request: Request, job_id: str) -> StreamingResponse:
        """Server-sent events for one job; the stream ends when the job does."""
        get_record(job_id)
        return StreamingResponse(stream(request, job_id), media_type="text/event-stream")

    @api.get("/metrics", tags=["metrics"])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/devices", tags=["devices"])
    def devices() -> dict[str, Any]:
        return {"devices": device_report(service)}

    # -- OpenAI-compatible ---------------------------------------------------------------
    @api.post("/v1/audio/transcriptions", tags=["openai"])
    async def openai_transcriptions(request: Request) -> Response:
        """Drop-in for OpenAI's endpoint: queues a job and answers when it is done."""
        form = await request.form()
        try:
            source, _ = await save_upload(form)
            fmt = str(form.get("response_format") or "json")
            if fmt not in ("json", "text", "srt", "verbose_json", "vtt"):
                raise HTTPException(400, f"response_format {fmt!r} is not supported")
            model = str(form.get("model") or "")
            opts: dict[str, Any] = {
                "model": config.model if model in ("", "whisper-1") else model,
                "language": form.get("language") or None,
                "initial_prompt": form.get("prompt") or None,
                "word_timestamps": False,
            }
        finally:
            await form.close()
        rec = await asyncio.to_thread(build_record, source, opts, False)
        await asyncio.to_thread(service.submit, rec)
        done = service.final_event(rec.id)
        await asyncio.to_thread(done.wait)
        final = get_record(rec.id)
        if final.status is not JobState.COMPLETED:
            raise HTTPException(500, f"transcription failed: {final.error or final.status.value}")
        tr = Transcript.from_dict(json.loads(Path(dict(final.outputs)["json"]).read_text()))
        if fmt == "text":
            return PlainTextResponse(tr.text)
        if fmt in ("srt", "vtt"):
            return Response(render(tr, fmt), media_type=MEDIA_TYPES[fmt])
        if fmt == "json":
            return JSONResponse({"text": tr.text})
        return JSONResponse(
            {
                "task": "transcribe",
                "language": tr.language,
                "duration": tr.duration_s,
                "text": tr.text,
                "segments": [
                    {
                        "id": i,
                        "seek": 0,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "tokens": [],
                        "temperature": 0.0,
                        "avg_logprob": 0.0,
                        "compression_ratio": 0.0,
                        "no_speech_prob": 0.0,
                    }
                    for i, s in enumerate(tr.segments)
                ],
            }
        )

    app.include_router(api)
    return app


def device_report(service: SchedulerService) -> list[dict[str, Any]]:
    runner = service.runner
    out = []
    for dev_id in list(runner.readings):
        split = runner.memory_split(dev_id)
        if split is None:
            continue
        out.append(
            {
                "id": dev_id,
                "kind": runner.devices[dev_id].kind,
                "total_mb": split.total_mb,
                "others_mb": split.others_mb,
                "ours_mb": split.ours_mb,
                "reserved_mb": split.reserved_mb,
                "free_mb": split.free_mb,
                "instances": [
                    {
                        "job_id": i.job_id,
                        "state": instance_state(i),
                        "pid": i.pid,
                        "reserved_mb": i.reserved_mb,
                        "observed_mb": i.observed_mb,
                    }
                    for i in split.instances
                ],
            }
        )
    return out


def instance_state(inst: Tracked) -> str:
    """What an instance is doing, in the words the dashboard shows."""
    if inst.exited_at is not None:
        return "releasing"
    if inst.idle_since is not None:
        return "idle"
    if inst.starting:
        return "starting"
    return inst.state.value


def _truthy(value: object) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on") if value is not None else False


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


Handler = Callable[[Request], Awaitable[Response]]
