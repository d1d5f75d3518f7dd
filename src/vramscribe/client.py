"""A small HTTP client for the service, used by the client commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from vramscribe.errors import VramscribeError


class ServiceError(VramscribeError):
    """The service answered with an error."""


class Client:
    def __init__(self, server: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ServiceError(f"{resp.status_code}: {detail}")
        return resp.json()

    def submit(self, path: Path, **options: Any) -> dict[str, Any]:
        data = {k: str(v) for k, v in options.items() if v is not None}
        with path.open("rb") as fh:
            resp = self.http.post("/v1/jobs", files={"file": (path.name, fh)}, data=data)
        result: dict[str, Any] = self._check(resp)
        return result

    def jobs(self, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        result: dict[str, Any] = self._check(self.http.get("/v1/jobs", params=params))
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self.http.get(f"/v1/jobs/{job_id}"))
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._check(self.http.delete(f"/v1/jobs/{job_id}"))
        return result

    def transcript(self, job_id: str, fmt: str = "txt") -> str:
        resp = self.http.get(f"/v1/jobs/{job_id}/transcript", params={"format": fmt})
        if resp.status_code >= 400:
            self._check(resp)
        return resp.text

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Follow one job's server-sent events until it ends."""
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])
