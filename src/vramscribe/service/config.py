"""Service settings: one frozen dataclass, one docstring per field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vramscribe.core.settings import Settings

DEFAULT_MAX_UPLOAD = 2 * 1024**3


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path
    """Everything the service keeps: store, uploads, transcripts, run folders."""

    store_url: str | None = None
    """SQLAlchemy URL; default: SQLite in ``data_dir``."""

    token: str | None = None
    """Bearer token every endpoint but the health checks requires (None: no auth)."""

    allowed_roots: tuple[Path, ...] = ()
    """Folders whose files clients may name by server-side path."""

    device: str = "auto"
    """Device selection, as the CLI's ``--device``."""

    model: str = "tiny.en"
    """Model for jobs that do not name one (and for OpenAI's ``whisper-1``)."""

    settings: Settings = field(default_factory=Settings)
    """The scheduler's settings."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    """Uploads larger than this are refused while they stream in."""

    cpu_threads: int = 1
    """Threads per instance on the CPU."""

    hang_timeout_s: float = 600.0
    """A worker silent this long is killed and its job retried."""

    engine: str = "faster-whisper"
    """``faster-whisper``, or ``fake`` with ``fake_config`` (tests, demos without models)."""

    fake_config: dict[str, object] = field(default_factory=dict)
    """Options of the fake engine."""
