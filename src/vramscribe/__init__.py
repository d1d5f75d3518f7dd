"""vramscribe: many Whisper jobs at once on shared GPUs, admitted by live free memory.

From Python::

    import vramscribe

    for result in vramscribe.transcribe(["talk.mp3"], model="tiny.en", device="cpu"):
        print(result.text if result.ok else result.error)

:func:`transcribe` and :class:`Scheduler` run the jobs here (``vramscribe.api``);
:class:`Client` talks to a running service (``vramscribe.client``). They are
imported on first use, so the command line starts without loading the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramscribe.api import Event, Result, Scheduler, Transcription, transcribe
    from vramscribe.client import Client

__version__ = "0.1.0"
__all__ = ["Client", "Event", "Result", "Scheduler", "Transcription", "__version__", "transcribe"]

_LAZY = {
    "transcribe": "vramscribe.api",
    "Scheduler": "vramscribe.api",
    "Result": "vramscribe.api",
    "Event": "vramscribe.api",
    "Transcription": "vramscribe.api",
    "Client": "vramscribe.client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vramscribe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
