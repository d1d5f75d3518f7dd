"""Completion webhooks: when a job with a ``callback_url`` ends, its final state is posted there.

The body is ``{"event": "job.finished", "job": <the job as GET /v1/jobs/{id} shows it>}``.
When the service has a token, the request is signed with it so the receiver
can check where it came from and that it was not replayed:

    X-Vramscribe-Timestamp: <unix seconds>
    X-Vramscribe-Signature: sha256=<hex HMAC-SHA256(token, "<timestamp>.<body>")>

A delivery succeeds on any 2xx answer. Failures (an error status, a refused
connection, a timeout) are retried with exponential backoff (1, 2, 4, 8 s ...)
up to :data:`MAX_ATTEMPTS` attempts; every attempt is recorded in the store, and
callbacks still due after a restart are sent then. One thread sends them all,
so a slow receiver never holds up the scheduler or the API.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from vramscribe.store.callbacks import Callbacks
from vramscribe.store.records import JobRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_S = 1.0
TIMEOUT_S = 10.0
URL_TEXT = r"https?://[A-Za-z0-9._~%:\[\]-]+(?:[/?#][!-~]*)?"
"""What a ``callback_url`` must look like: printable ASCII (percent-encode the rest).

The API document publishes the same pattern, so it avoids classes such as
"whitespace", whose meaning differs between Python's and JavaScript's regexes.
"""
MAX_URL = 2048
_URL = re.compile(URL_TEXT)


def valid_url(url: str) -> bool:
    return len(url) <= MAX_URL and _URL.fullmatch(url) is not None


def signature(token: str, timestamp: str, body: bytes) -> str:
    """What ``X-Vramscribe-Signature`` carries for ``body`` sent at ``timestamp``."""
    mac = hmac.new(token.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class Webhooks:
    """Sends completion callbacks on a thread of its own, retrying with backoff."""

    def __init__(
        self,
        callbacks: Callbacks,
        job_of: Callable[[str], dict[str, Any] | None],
        token: str | None,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self.callbacks = callbacks
        self.job_of = job_of
        """The job's JSON as the API shows it, or None if it is gone."""
        self.token = token
        self.backoff_s = backoff_s
        self._due: list[tuple[float, str]] = []
        self._wanted: set[str] = set()
        """Jobs with a callback not yet delivered."""
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        for cb in self.callbacks.undelivered(MAX_ATTEMPTS):
            self._wanted.add(cb.job_id)
            if _ended(self.job_of(cb.job_id)):
                self._schedule(cb.job_id, 0.0)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=TIMEOUT_S + 5)

    def register(self, rec: JobRecord, url: str) -> None:
        """Remember ``url`` for a new job (which may have ended already)."""
        self.callbacks.add(rec.id, url)
        self._wanted.add(rec.id)
        if _ended(self.job_of(rec.id)):
            self.job_ended(rec.id)

    def job_ended(self, job_id: str) -> None:
        """Called from the scheduler's thread for every job: queues a delivery if one is due."""
        if job_id in self._wanted:
            self._schedule(job_id, 0.0)

    def _schedule(self, job_id: str, delay_s: float) -> None:
        with self._cv:
            heapq.heappush(self._due, (time.monotonic() + delay_s, job_id))
            self._cv.notify()

    def _loop(self) -> None:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            while True:
                with self._cv:
                    while not self._stop and (not self._due or self._due[0][0] > time.monotonic()):
                        wait = self._due[0][0] - time.monotonic() if self._due else None
                        self._cv.wait(wait)
                    if self._stop:
                        return
                    _, job_id = heapq.heappop(self._due)
                try:
                    self._deliver(client, job_id)
                except Exception:  # the sender must outlive any one bad callback
                    log.exception("webhook for job %s", job_id)

    def _deliver(self, client: httpx.Client, job_id: str) -> None:
        cb = self.callbacks.get(job_id)
        job = self.job_of(job_id)
        if cb is None or job is None or cb.delivered_at is not None or cb.attempts >= MAX_ATTEMPTS:
            self._wanted.discard(job_id)
            return
        body = json.dumps({"event": "job.finished", "job": job}).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vramscribe-webhook",
            "X-Vramscribe-Event": "job.finished",
            "X-Vramscribe-Timestamp": timestamp,
        }
        if self.token:
            headers["X-Vramscribe-Signature"] = signature(self.token, timestamp, body)
        error: str | None = None
        try:
            answer = client.post(cb.url, content=body, headers=headers)
            if not answer.is_success:
                error = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.callbacks.attempted(job_id, delivered_at=None if error else time.time(), error=error)
        if error is not None and cb.attempts + 1 < MAX_ATTEMPTS:
            self._schedule(job_id, self.backoff_s * 2**cb.attempts)
        else:
            self._wanted.discard(job_id)


def _ended(job: dict[str, Any] | None) -> bool:
    return job is not None and job["status"] in ("completed", "failed", "cancelled")
