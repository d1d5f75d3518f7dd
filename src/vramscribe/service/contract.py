"""What the OpenAPI document promises, kept next to the code that keeps the promise.

FastAPI documents typed parameters and response models on its own; this
module adds what it cannot see: the error answers each operation can give
(every one has a typed body, :class:`ErrorOut`), the two request bodies of
``POST /v1/jobs`` (read by hand in ``intake.py``), the bearer token as a
security scheme, and a 405 answer whose ``Allow`` header lists every method
the path has (Starlette's lists only the first route it matched).

The option fields are documented as tightly as :class:`JobRequest` checks
them, so a request the document calls valid is not refused with 422; what no
schema can say (that a file really is audio, that a model exists on this
server) is answered 415 and 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from vramscribe.service.schemas import MAX_BATCH
from vramscribe.service.webhooks import MAX_URL, URL_TEXT
from vramscribe.submit.request import COMPUTE_TYPES, OPTION_FIELDS, TEXT_PATTERNS


class ErrorOut(BaseModel):
    """Every error answer: a message, or FastAPI's list of invalid fields (422)."""

    detail: str | list[dict[str, Any]]


MEANINGS = {
    400: "Malformed request: invalid JSON, a bad path, or a model this server does not have",
    401: "Missing or wrong bearer token",
    403: "Server-side paths are disabled, or the path is outside the allowed folders",
    404: "No such job or file",
    409: "The job is not in a state that allows this",
    413: "The upload is larger than the service accepts",
    415: "Not a supported content type, or the file is not usable audio",
    422: "A field is missing or out of range",
    500: "The transcription failed",
    503: "Not ready, or shutting down (not admitting work)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries for ``codes`` (401 is added: every route is behind the token)."""
    return {
        code: {"model": ErrorOut, "description": MEANINGS[code]} for code in sorted({401, *codes})
    }


def text_body(*media_types: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 200 answer that is text in one of ``media_types`` (``application/json``: ``json``)."""
    content = {media: {"schema": {"type": "string"}} for media in media_types}
    if json is not None:
        content["application/json"] = {"schema": json}
    return {"content": content, "description": "Successful Response"}


SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: its type, and its data as a JSON text.",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
}
"""A server-sent event as the document describes a ``text/event-stream`` item."""

_SEGMENT = {
    "type": "object",
    "required": ["start", "end", "text"],
    "properties": {
        "start": {"type": "number"},
        "end": {"type": "number"},
        "text": {"type": "string"},
        "words": {"type": "array", "items": {"type": "object"}},
    },
}
TRANSCRIPT_JSON: dict[str, Any] = {
    "type": "object",
    "description": "The json transcript file (``vramscribe.transcript`` schema).",
    "required": ["language", "duration_s", "segments"],
    "properties": {
        "language": {"type": "string"},
        "duration_s": {"type": "number"},
        "model": {"type": "string"},
        "text": {"type": "string"},
        "segments": {"type": "array", "items": _SEGMENT},
    },
}


MAX_OFFSET = 10**12
"""Beyond any store's size, well inside a 64-bit integer (SQLite's limit)."""


def _text(name: str) -> dict[str, Any]:
    """The strings ``name`` accepts; empty means the default."""
    return {"type": "string", "pattern": f"^(?:{TEXT_PATTERNS[name]})?$"}


_COMPUTE = {"type": "string", "enum": [*COMPUTE_TYPES, ""]}
# Flags are read as form fields are: true, 1, "1", "true", "yes", "on" (any case) mean yes.
_FLAG = {"type": ["boolean", "string", "number"]}
_FORM_OPTIONS: dict[str, dict[str, Any]] = {
    "priority": _text("priority"),
    "beam_size": _text("beam_size"),
    "batch_size": _text("batch_size"),
    "compute_type": _COMPUTE,
}
_JSON_OPTIONS: dict[str, dict[str, Any]] = {
    "priority": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 100}, _text("priority")]},
    "beam_size": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 20}, _text("beam_size")]},
    "batch_size": {
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": 64}, _text("batch_size")]
    },
    "compute_type": _COMPUTE,
    "vad_filter": _FLAG,
    "word_timestamps": _FLAG,
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def job_body_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The multipart and JSON schemas of one job's submission (options: see the module)."""
    form: dict[str, Any] = {"file": {"type": "string", "format": "binary"}}
    form |= {name: _FORM_OPTIONS.get(name, {"type": "string"}) for name in OPTION_FIELDS}
    json_props: dict[str, Any] = {
        "path": {"type": "string", "minLength": 1, "pattern": "^[^\\x00]+$"}
    }
    json_props |= {
        name: _nullable(_JSON_OPTIONS.get(name, {"type": "string"})) for name in OPTION_FIELDS
    }
    callback = {"type": "string", "maxLength": MAX_URL, "pattern": f"^(?:{URL_TEXT})?$"}
    form["callback_url"] = callback
    json_props["callback_url"] = _nullable(callback)
    multipart = {"type": "object", "required": ["file"], "properties": form}
    by_path = {
        "type": "object",
        "required": ["path"],
        "properties": json_props,
        "additionalProperties": False,
    }
    return multipart, by_path


def job_request_body() -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/jobs``: an upload, or a server-side path."""
    multipart, by_path = job_body_schemas()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": by_path},
            },
        }
    }


def batch_request_body() -> dict[str, Any]:
    """``openapi_extra`` for ``POST /v1/batches``: the same fields, with several files or paths."""
    multipart, by_path = job_body_schemas()
    files = {"type": "array", "items": multipart["properties"]["file"], "minItems": 1}
    paths = {"type": "array", "items": by_path["properties"]["path"], "minItems": 1}
    form = {**multipart, "properties": {**multipart["properties"], "file": files}}
    props = {k: v for k, v in by_path["properties"].items() if k != "path"}
    json_body = {**by_path, "required": ["paths"], "properties": {"paths": paths, **props}}
    paths["maxItems"] = files["maxItems"] = MAX_BATCH
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": json_body},
            },
        }
    }


def openai_request_body() -> dict[str, Any]:
    """``openapi_extra`` for OpenAI's endpoint: its multipart fields."""
    fields = {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "language": {"type": "string"},
        "prompt": {"type": "string"},
        "response_format": {
            "type": "string",
            "enum": ["json", "text", "srt", "verbose_json", "vtt"],
        },
    }
    schema = {"type": "object", "required": ["file"], "properties": fields}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def install_allow_handler(app: FastAPI, routers: list[APIRouter]) -> None:
    """Answer 405 with every method the path allows (``routers``: all the app includes)."""
    routes = [(r.path_regex, r.methods or set()) for router in routers for r in router.routes
              if isinstance(r, APIRoute)]  # fmt: skip

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        path = request.url.path
        methods = sorted({m for regex, ms in routes if regex.match(path) for m in ms})
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Method Not Allowed"
        return JSONResponse({"detail": detail}, 405, headers={"Allow": ", ".join(methods)})

    app.add_exception_handler(405, not_allowed)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The service's `--token`."},
    "token": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The token, for clients that cannot send headers (event streams).",
    },
}


def install_openapi(app: FastAPI, *public: APIRouter) -> None:
    """The document FastAPI builds, with the token's two schemes on every protected operation.

    Declared here rather than as dependencies of each route, which would run
    on every request only to be documented.
    """
    open_paths = {r.path for p in public for r in p.routes if isinstance(r, APIRoute)}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, operations in schema["paths"].items():
                if path not in open_paths:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"token": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
