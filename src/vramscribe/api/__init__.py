"""The Python API: :func:`transcribe`, :class:`Scheduler` and their results and events.

- ``transcribe.py``: :func:`transcribe`, a batch as an iterator of results.
- ``scheduler.py``: :class:`Scheduler`, work added over time, results and events.
- ``result.py``: :class:`Result` (one file's outcome) and :class:`Event`.

:class:`vramscribe.client.Client` is the same kind of access to a running service.
"""

from vramscribe.api.result import Event, Result
from vramscribe.api.scheduler import Scheduler
from vramscribe.api.transcribe import Transcription, transcribe

__all__ = ["Event", "Result", "Scheduler", "Transcription", "transcribe"]
