"""One exception hierarchy for the whole package.

Every error a user can meet derives from :class:`VramscribeError`, so callers
(the CLI, the service) can catch one type and print its message. Each class's
docstring is its default message.
"""

from __future__ import annotations


class VramscribeError(Exception):
    """Something went wrong in vramscribe."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class IllegalTransition(VramscribeError):
    """A job was asked to move between two states that its lifecycle does not connect."""


class UnknownModel(VramscribeError):
    """No memory estimate or model files are known for this model name."""


class DeviceOutOfMemory(VramscribeError):
    """The device has no room for this allocation."""


class DeviceUnavailable(VramscribeError):
    """The requested device cannot be used on this machine."""


class ScenarioError(VramscribeError):
    """A simulation scenario is malformed."""


class InvalidRequest(VramscribeError):
    """A job request is not valid."""

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The request field at fault, when there is one."""


class BadInput(VramscribeError):
    """The input is not audio that can be decoded (empty, truncated, or another kind of file)."""


class InputNotFound(VramscribeError):
    """No audio files were found at the given path."""


class ModelNotAvailable(VramscribeError):
    """The model cannot be found locally and cannot be downloaded from here."""


class EngineError(VramscribeError):
    """The transcription engine failed."""


class InvalidLimit(VramscribeError):
    """A memory limit or reserve is not valid."""


class SchedulerRunning(VramscribeError):
    """Another vramscribe scheduler already runs on this store."""


class LeaseLost(VramscribeError):
    """This scheduler no longer holds the job's lease: another node owns it now."""


class UnknownSchema(VramscribeError):
    """The job store was written by a version of vramscribe that this one does not know."""
