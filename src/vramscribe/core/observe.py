"""The policy shell: from device readings and our instances to the planner's input.

The planner decides from snapshots; something has to turn raw readings and
the instances we started into those snapshots, and decide when an exited
instance's memory is really back. That glue is where admission goes wrong
in practice (a neighbour's peak that remembers our own loads, a reservation
dropped while the driver still holds the memory, a platform that names none
of our processes), so it is written once, here, and the runtime, the
simulator and the GPU check all drive it. It is pure: time and readings are
arguments, and it touches no device and no process.

Attribution. Where readings name our processes, an instance's observed memory
is what the reading gives its pid, and its memory is back once the pid is gone
from a reading. Some platforms (containers where NVML reports host pids) never
name them: once a loaded instance has stayed unnamed for ``settle_s`` the
device is marked unattributed, and from then on an instance's reservation
counts as observed once it has been loaded for ``settle_s``, and an exited
instance is released ``settle_s`` after its exit. ``settle_s`` must exceed the
reading lag: a reading taken just after ``loaded`` can predate the allocation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vramscribe.core.jobs import JobState
from vramscribe.core.neighbours import NeighbourTracker
from vramscribe.core.snapshot import DeviceSnapshot, InstanceView, Reading

MIB = 1024 * 1024


@dataclass(slots=True, eq=False)
class Tracked:
    """One of our model instances, followed from its start until its memory is back.

    ``reserved_mb`` is what the planner granted; ``observed_mb`` what the last
    reading attributes to it; ``peak_mb`` the most it was seen to hold during
    its current job (0 until a reading taken after the job began shows it:
    ``job_since``), so a warm instance's next job never inherits the last one's
    batch slots from a lagging reading. ``job_id`` is the job it runs (or last ran, when idle);
    ``key`` the engine key a warm instance can serve.
    """

    job_id: str
    device_id: str
    pid: int
    reserved_mb: float
    expected_end: float
    priority: int = 0
    key: str = ""
    state: JobState = JobState.LOADING
    starting: bool = True
    idle_since: float | None = None
    closing: bool = False
    """Told to exit (released or replaced): no longer offered as idle, memory still counted."""
    loaded_at: float | None = None
    exited_at: float | None = None
    last_kill_at: float | None = None
    observed_mb: float = 0.0
    peak_mb: float = 0.0
    job_since: float = 0.0
    batch_size: int = 1
    shared: bool = False
    """Another of our instances transcribed on its device during its current job: the
    speed it measures then is not its batch size's own (see ``FootprintBook``)."""

    @property
    def outstanding_mb(self) -> float:
        return max(0.0, self.reserved_mb - self.observed_mb)

    @property
    def transcribing(self) -> bool:
        return (
            self.state is JobState.PROCESSING and self.idle_since is None and self.exited_at is None
        )

    @property
    def instance_id(self) -> str:
        return str(self.pid)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the shell needs to know of a device besides its readings."""

    id: str
    kind: str
    max_instances: int | None = None
    s_max: float | None = None
    reserve_bytes: int = 0
    memory_limit_bytes: int | None = None
    """Memory the user leaves to others on this device (``--reserve``): subtracted from
    free memory like the margin, so a neighbour whose peak never shows still finds it."""
    reading_lag_s: float = 0.0
    """How long an allocation may take to show in a reading: nothing is admitted on the
    device until a reading taken that long after the shell's first look exists, so a
    neighbour that started with us is in it."""


@dataclass(frozen=True, slots=True)
class MemorySplit:
    """A device's memory as every view shows it: others, ours, reserved, free.

    "Ours" counts only our instances (NVML lists every process on a GPU);
    "reserved" is what starting instances were granted but do not hold yet.
    """

    total_mb: float
    measured_free_mb: float
    others_mb: float
    ours_mb: float
    reserved_mb: float
    free_mb: float
    instances: list[Tracked]


@dataclass(slots=True)
class Observation:
    """One look at the world: the planner's input and what to do about exited instances.

    ``released``: exited instances whose memory is confirmed back (the shell
    has forgotten them). ``rekill``: exited instances whose memory still lingers
    ``release_timeout_s`` after their exit or last kill; end their processes
    again (the seed's release retry).
    """

    snapshots: list[DeviceSnapshot] = field(default_factory=list)
    views: list[InstanceView] = field(default_factory=list)
    released: list[Tracked] = field(default_factory=list)
    rekill: list[Tracked] = field(default_factory=list)
    unattributed: list[str] = field(default_factory=list)
    """Devices this look found to name none of our processes (worth a warning)."""


class PolicyShell:
    """Follows our instances and the devices' readings; owns cooldowns and neighbour peaks."""

    def __init__(
        self,
        *,
        settle_s: float = 2.0,
        release_timeout_s: float = 10.0,
        neighbour_window_s: float = 900.0,
    ) -> None:
        self.settle_s = settle_s
        self.release_timeout_s = release_timeout_s
        self.neighbours = NeighbourTracker(neighbour_window_s)
        # Per device: True once a reading named one of our instances, False once a loaded
        # instance stayed unnamed past settle_s, None while unknown.
        self.attributed: dict[str, bool | None] = {}
        self.cooldown: dict[str, float] = {}
        self.instances: list[Tracked] = []
        self.started_at: float | None = None
        self.fresh: set[str] = set()  # devices with a reading taken after the reading lag
        self.lag: dict[str, float] = {}  # each device's reading lag, as last given
        self.managed: dict[str, float] = {}
        """Per device: what other vramscribe processes on the host hold or reserved (their
        ledger entries). Admitted under the same rule, it is not a neighbour's peak to keep."""

    # -- what happened to an instance ------------------------------------------------
    def start(self, inst: Tracked) -> None:
        self.instances.append(inst)

    def started(self, inst: Tracked) -> None:
        """Its process is up; the model load begins (the load cap counts it from now)."""
        inst.starting = False

    def loaded(self, inst: Tracked, now: float) -> None:
        inst.starting = False
        inst.loaded_at = now
        inst.state = JobState.PROCESSING

    def idle(self, inst: Tracked, now: float) -> None:
        """Its job is done and it stays loaded, waiting for another job of its key.

        Once it has been idle for ``settle_s`` (longer than the reading lag) its
        reservation shrinks to what readings show it holding (see ``observe``).
        """
        inst.idle_since = now
        inst.expected_end = now

    def assign(
        self,
        inst: Tracked,
        job_id: str,
        reserved_mb: float,
        expected_end: float,
        priority: int,
        now: float,
        batch_size: int = 1,
    ) -> None:
        """An idle instance takes a job: its reservation grows to the job's peak."""
        inst.job_id = job_id
        inst.batch_size = batch_size
        inst.reserved_mb = reserved_mb
        inst.expected_end = expected_end
        inst.priority = priority
        inst.idle_since = None
        inst.peak_mb = 0.0
        inst.job_since = now
        inst.shared = False

    def exited(self, inst: Tracked, now: float) -> None:
        """Its process is gone; its reservation stays until the memory is seen back."""
        if inst.exited_at is None:
            inst.exited_at = now

    def cool(self, device_id: str, until: float) -> None:
        """Admit nothing on ``device_id`` before ``until`` (after an out-of-memory failure)."""
        self.cooldown[device_id] = max(self.cooldown.get(device_id, 0.0), until)

    # -- one look ----------------------------------------------------------------------
    def observe(
        self,
        now: float,
        readings: Mapping[str, Reading],
        devices: Iterable[DeviceInfo],
        unreadable: Iterable[str] = (),
    ) -> Observation:
        """Confirm releases, update what each instance holds, and build the planner's input.

        A device in ``unreadable`` keeps its last reading for releases and views
        but gets no snapshot, so nothing is admitted on it.
        """
        out = Observation()
        if self.started_at is None:
            self.started_at = now
        devices = list(devices)
        for dev in devices:
            self.lag[dev.id] = dev.reading_lag_s
        self._confirm_releases(now, readings, out)
        for inst in self.instances:
            reading = readings.get(inst.device_id)
            if reading is None:
                continue
            inst.observed_mb = self._observed(inst, reading, now, out)
            if reading.time >= inst.job_since + self.lag.get(inst.device_id, 0.0):
                inst.peak_mb = max(inst.peak_mb, inst.observed_mb)
            self._settle_idle(inst, now)
            end = max(now, inst.expected_end) if inst.exited_at is None else now
            out.views.append(
                InstanceView(
                    inst.job_id,
                    inst.device_id,
                    inst.state,
                    inst.reserved_mb,
                    inst.observed_mb,
                    end,
                    inst.priority,
                    inst.instance_id,
                    inst.key,
                    inst.idle_since if inst.exited_at is None and not inst.closing else None,
                    inst.starting,
                    inst.batch_size,
                )
            )
        self._mark_shared()
        skip = set(unreadable)
        for dev in devices:
            reading = readings.get(dev.id)
            if reading is None or dev.id in skip:
                continue
            out.snapshots.append(self._snapshot(dev, reading, now))
        return out

    def split(self, device_id: str, reading: Reading) -> MemorySplit:
        mine = [i for i in self.instances if i.device_id == device_id]
        ours = sum(i.observed_mb for i in mine)
        reserved = sum(i.outstanding_mb for i in mine)
        return MemorySplit(
            total_mb=reading.total_mb,
            measured_free_mb=reading.free_mb,
            others_mb=max(0.0, reading.used_mb - ours),
            ours_mb=ours,
            reserved_mb=reserved,
            free_mb=max(0.0, reading.free_mb - reserved),
            instances=mine,
        )

    # -- the parts -------------------------------------------------------------------
    def _snapshot(self, dev: DeviceInfo, reading: Reading, now: float) -> DeviceSnapshot:
        if (
            dev.id not in self.fresh
            and reading.time >= (self.started_at or 0.0) + dev.reading_lag_s
        ):
            self.fresh.add(dev.id)
        peak = None
        if dev.kind != "cpu":
            split = self.split(dev.id, reading)
            # Memory a starting instance may already hold is not a neighbour's: count
            # outstanding reservations as ours, or the peak would remember our own loads.
            managed = self.managed.get(dev.id, 0.0)
            others = max(0.0, split.others_mb - split.reserved_mb - managed)
            peak = self.neighbours.observe(dev.id, now, others)
        return DeviceSnapshot(
            dev.id,
            dev.kind,
            reading.total_mb,
            reading.free_mb,
            max_instances=dev.max_instances,
            foreign_peak_mb=peak,
            cooldown_until=self.cooldown.get(dev.id, 0.0),
            s_max=dev.s_max,
            memory_limit_bytes=dev.memory_limit_bytes,
            fresh=dev.id in self.fresh,
            reserve_mb=dev.reserve_bytes / MIB,
        )

    def _confirm_releases(
        self, now: float, readings: Mapping[str, Reading], out: Observation
    ) -> None:
        keep: list[Tracked] = []
        for inst in self.instances:
            if inst.exited_at is None:
                keep.append(inst)
                continue
            if self.attributed.get(inst.device_id) is False:
                # No per-process view: wait out the reading lag instead.
                gone = now - inst.exited_at >= self.settle_s
            else:
                # A reading older than the exit plus the device's lag may not show an
                # instance that lived less than the lag at all; one that then showed it
                # would count its memory as a neighbour's (and as their peak).
                reading = readings.get(inst.device_id)
                lag = self.lag.get(inst.device_id, 0.0)
                gone = reading is None or (
                    inst.pid not in reading.processes and reading.time >= inst.exited_at + lag
                )
            if gone:
                out.released.append(inst)
                continue
            keep.append(inst)
            since = now - (inst.last_kill_at or inst.exited_at)
            if since > self.release_timeout_s:
                inst.last_kill_at = now
                out.rekill.append(inst)
        self.instances = keep

    def _mark_shared(self) -> None:
        """Instances transcribing on one device together each lose their solo speed."""
        busy: dict[str, list[Tracked]] = {}
        for inst in self.instances:
            if inst.transcribing:
                busy.setdefault(inst.device_id, []).append(inst)
        for together in busy.values():
            if len(together) > 1:
                for inst in together:
                    inst.shared = True

    def _settle_idle(self, inst: Tracked, now: float) -> None:
        """An instance idle for longer than the reading lag is fully in the readings: its
        job's batch slots and growth are no longer spoken for, so its reservation shrinks
        to what it holds (it does not grow between jobs). Earlier readings may predate
        its last allocations, so until then the job's reservation stands."""
        if inst.idle_since is None or inst.exited_at is not None or inst.observed_mb <= 0:
            return
        if now - inst.idle_since >= self.settle_s and self.attributed.get(inst.device_id):
            inst.reserved_mb = min(inst.reserved_mb, inst.observed_mb)

    def _observed(self, inst: Tracked, reading: Reading, now: float, out: Observation) -> float:
        """Memory the reading attributes to ``inst``, or its reservation where it cannot."""
        observed = reading.processes.get(inst.pid, 0.0)
        if observed > 0:
            self.attributed[inst.device_id] = True
            return observed
        settled = inst.loaded_at is not None and now - inst.loaded_at >= self.settle_s
        if not settled:
            return observed
        if self.attributed.get(inst.device_id) is None and inst.exited_at is None:
            self.attributed[inst.device_id] = False
            out.unattributed.append(inst.device_id)
        return inst.reserved_mb if self.attributed.get(inst.device_id) is False else observed
