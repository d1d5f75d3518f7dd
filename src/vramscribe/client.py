"""``vramscribe.Client``: a running service from Python; the CLI's client commands use it.

Every method is one request (or one event stream) of the service's API;
:meth:`Client.transcribe` puts them together into what
:func:`vramscribe.transcribe` does locally: results in the order the jobs end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from vramscribe.errors import VramscribeError

if TYPE_CHECKING:
    from vramscribe.api.result import Result

FINAL_STATES = ("completed", "failed", "cancelled")


class ServiceError(VramscribeError):
    """The service answered with an error."""


class Client:
    """The service at ``server`` (e.g. ``http://127.0.0.1:8000``), with its bearer ``token``.

    Errors the service answers with raise :class:`ServiceError` with its message. ::

        with vramscribe.Client("http://127.0.0.1:8000", token) as client:
            for result in client.transcribe(["talk.mp3"], priority="high"):
                print(result.text or result.error)
    """

    def __init__(self, server: str, token: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ServiceError(f"{resp.status_code}: {detail}")
        return resp.json()

    def submit(self, path: str | Path, **options: Any) -> dict[str, Any]:
        """Upload a file as a new job (``options``: model, priority, language, ...); the job."""
        data = {k: str(v) for k, v in options.items() if v is not None}
        path = Path(path)
        with path.open("rb") as fh:
            resp = self.http.post("/v1/jobs", files={"file": (path.name, fh)}, data=data)
        result: dict[str, Any] = self._check(resp)
        return result

    def submit_path(self, path: str | Path, **options: Any) -> dict[str, Any]:
        """A job for a file the service reads itself (under one of its ``--allowed-root``)."""
        body = {"path": str(path), **{k: v for k, v in options.items() if v is not None}}
        result: dict[str, Any] = self._check(self.http.post("/v1/jobs", json=body))
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

    def wait(
        self, job_id: str, timeout: float | None = None, poll_s: float = 0.5
    ) -> dict[str, Any]:
        """The job once it has ended (completed, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll_s)

    def result(self, job_id: str, timeout: float | None = None) -> Result:
        """The job's :class:`~vramscribe.api.result.Result`, once it has ended."""
        from vramscribe.api.result import result_from_service

        job = self.wait(job_id, timeout)
        transcript = None
        if job["status"] == "completed":
            transcript = json.loads(self.transcript(job_id, "json"))
        return result_from_service(job, transcript)

    def transcribe(
        self, paths: Iterable[str | Path], poll_s: float = 0.5, **options: Any
    ) -> Iterator[Result]:
        """Upload every file, then yield their results in the order the jobs end."""
        waiting = [self.submit(path, **options)["id"] for path in paths]
        while waiting:
            for job_id in list(waiting):
                if self.job(job_id)["status"] in FINAL_STATES:
                    waiting.remove(job_id)
                    yield self.result(job_id)
            if waiting:
                time.sleep(poll_s)
