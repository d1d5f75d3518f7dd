"""OpenAI's transcription endpoint: queue a job and answer when it is done."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from vramscribe.core.jobs import JobState
from vramscribe.outputs import render
from vramscribe.service.contract import errors, openai_request_body
from vramscribe.service.deps import Service, record_or_404
from vramscribe.service.intake import save_upload, submit_file
from vramscribe.service.routes.transcripts import MEDIA_TYPES
from vramscribe.service.schemas import OpenAISegment, OpenAIText, OpenAIVerbose
from vramscribe.transcript import Transcript

router = APIRouter(tags=["openai"])

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_TEXT_TYPES = (MEDIA_TYPES["srt"], MEDIA_TYPES["vtt"])
OPENAI_MODELS = ("", "whisper-1")
"""Model names that mean "the service's default model"."""


@router.post(
    "/v1/audio/transcriptions",
    response_class=Response,
    responses={
        200: {
            "description": "The transcript in the asked format",
            "model": OpenAIText | OpenAIVerbose,
            "content": {
                **{m: {"schema": {"type": "string"}} for m in ("text/plain", *_TEXT_TYPES)},
            },
        },
        **errors(400, 413, 415, 422, 500),
    },
    openapi_extra=openai_request_body(),
)
async def openai_transcriptions(request: Request, service: Service) -> Response:
    """Drop-in for OpenAI's endpoint: queues a job and answers when it is done."""
    form = await request.form()
    try:
        source, filename = await save_upload(form, service.uploads)
        fmt = str(form.get("response_format") or "json")
        model = str(form.get("model") or "")
        fields = {
            "model": None if model in OPENAI_MODELS else model,
            "language": form.get("language"),
            "initial_prompt": form.get("prompt"),
        }
    finally:
        await form.close()
    if fmt not in RESPONSE_FORMATS:
        source.unlink(missing_ok=True)
        raise HTTPException(400, f"response_format {fmt!r} is not supported")
    rec = await submit_file(service, source, fields, filename=filename)
    await asyncio.to_thread(service.final_event(rec.id).wait)
    final = record_or_404(service, rec.id)
    if final.status is not JobState.COMPLETED:
        raise HTTPException(500, f"transcription failed: {final.error or final.status.value}")
    tr = Transcript.from_dict(json.loads(Path(dict(final.outputs)["json"]).read_text()))
    return _answer(tr, fmt)


def _answer(tr: Transcript, fmt: str) -> Response:
    if fmt == "text":
        return PlainTextResponse(tr.text)
    if fmt in ("srt", "vtt"):
        return Response(render(tr, fmt), media_type=MEDIA_TYPES[fmt])
    if fmt == "json":
        return JSONResponse(OpenAIText(text=tr.text).model_dump())
    verbose = OpenAIVerbose(
        language=tr.language,
        duration=tr.duration_s,
        text=tr.text,
        segments=[
            OpenAISegment(id=i, start=s.start, end=s.end, text=s.text)
            for i, s in enumerate(tr.segments)
        ],
    )
    return JSONResponse(verbose.model_dump())
