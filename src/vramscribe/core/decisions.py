"""What one planner call decides: starts, rejections, releases, holds and reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramscribe.core.idle import Release
from vramscribe.core.room import Hold


@dataclass(frozen=True, slots=True)
class Start:
    """Start ``job_id`` on ``device_id``; on the idle instance ``instance_id`` if set."""

    job_id: str
    device_id: str
    reserved_mb: float
    expected_end: float
    instance_id: str | None = None
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class Reject:
    job_id: str
    reason: str


@dataclass(slots=True)
class Plan:
    """The planner's decisions for one moment.

    ``reasons`` holds a reason for each job the planner looked at and did not
    start; jobs it did not need to look at share ``default_reason``.
    """

    starts: list[Start] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    default_reason: str = ""
    hold: Hold | None = None

    def reason_for(self, job_id: str) -> str:
        return self.reasons.get(job_id, self.default_reason)
