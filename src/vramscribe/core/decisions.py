"""What one planner call decides: starts, rejections, releases, holds and reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramscribe.core.idle import Release
from vramscribe.core.room import Hold, gib


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


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a job fits nowhere beside other processes: the device that comes closest."""

    device_id: str
    needs_mb: float
    others_mb: float
    """What other processes hold there (the recent peak if higher than now)."""
    total_mb: float
    usable_mb: float
    """What we could hold there beside them, after the margin and any reserve."""
    model: str = ""

    def reason(self) -> str:
        return (
            f"blocked by other processes' memory on {self.device_id} "
            f"(needs {gib(self.needs_mb)} GiB, others hold {gib(self.others_mb)} "
            f"of {gib(self.total_mb)} GiB, {gib(max(0.0, self.usable_mb))} usable)"
        )

    def give_up(self, waited_s: float) -> str:
        """The failure reason once the wait is over: what blocks the job, what would help."""
        return (
            f"gave up after {fmt_wait(waited_s)} blocked by other processes' memory: "
            f"needs {gib(self.needs_mb)} GiB on {self.device_id}, where other processes "
            f"hold {gib(self.others_mb)} of {gib(self.total_mb)} GiB and "
            f"{gib(max(0.0, self.usable_mb))} GiB is usable; what would help: a smaller "
            f"model than {self.model or 'this one'}, --compute-type int8, another device, "
            "or a memory limit on the other process"
        )


def fmt_wait(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


@dataclass(slots=True)
class Plan:
    """The planner's decisions for one moment.

    ``reasons`` holds a reason for each job the planner looked at and did not
    start; jobs it did not need to look at share ``default_reason``. ``blocked``
    names the jobs among them that fit on an empty device but on none beside
    what other processes hold (:mod:`vramscribe.core.wait` bounds their wait).
    """

    starts: list[Start] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    default_reason: str = ""
    hold: Hold | None = None
    blocked: dict[str, Blocked] = field(default_factory=dict)

    def reason_for(self, job_id: str) -> str:
        return self.reasons.get(job_id, self.default_reason)
