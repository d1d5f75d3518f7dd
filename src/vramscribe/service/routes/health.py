"""Health and readiness, the dashboard, Prometheus metrics, devices and the API docs.

``public`` needs no token (probes, and the dashboard's HTML, which holds no
data and asks for the token itself); ``router`` is included behind it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vramscribe.service.contract import errors, text_body
from vramscribe.service.deps import Service
from vramscribe.service.metrics import Metrics
from vramscribe.service.schemas import DeviceList, Status

public = APIRouter()
router = APIRouter()


@public.get("/healthz", tags=["health"], response_model=Status)
def healthz() -> Status:
    return Status(status="ok")


@public.get(
    "/readyz",
    tags=["health"],
    response_model=Status,
    responses={503: {"model": Status, "description": "Not ready"}},
)
def readyz(service: Service) -> JSONResponse:
    try:
        service.store.count()
    except Exception as exc:
        return JSONResponse({"status": "store unavailable", "detail": str(exc)}, 503)
    if not service.alive:
        return JSONResponse({"status": "scheduler not running"}, 503)
    return JSONResponse({"status": "ready"})


@public.get("/", include_in_schema=False)
def dashboard() -> Response:
    """The live dashboard; the page asks for the token itself (the HTML holds no data)."""
    html = resources.files("vramscribe.service").joinpath("static/dashboard.html")
    return Response(html.read_text(), media_type="text/html; charset=utf-8")


@router.get(
    "/metrics",
    tags=["metrics"],
    response_class=Response,
    responses={200: text_body("text/plain"), **errors()},
)
def prometheus(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/devices", tags=["devices"], response_model=DeviceList, responses=errors())
def devices(service: Service) -> DeviceList:
    return DeviceList(devices=service.devices())


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> Response:
    from fastapi.openapi.docs import get_swagger_ui_html

    token = request.query_params.get("token")
    url = "/openapi.json" + (f"?token={token}" if token else "")
    return get_swagger_ui_html(openapi_url=url, title="vramscribe API")
