"""NVIDIA GPUs as NVML sees them: total, free and memory per process id.

NVML is the driver's own account of device memory, so it sees every process
on the GPU (ours and our neighbours'), which is what admission needs. MB here
are MiB, as everywhere in the package.

Device ids are CUDA ordinals (``cuda:0`` is the first GPU a worker process can
see), not NVML indices: ``CUDA_VISIBLE_DEVICES`` is honoured so that the id the
planner places a job on is the device the worker opens. CUDA numbers GPUs
fastest-first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while NVML uses PCI
order; workers must run with ``PCI_BUS_ID`` for the two to agree on machines
with mixed GPUs.

Per-process memory is keyed by the pids NVML reports; inside a container with
its own pid namespace those are host pids and will not match ours.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import pynvml

from vramscribe.devices.base import Reading
from vramscribe.errors import DeviceUnavailable

MIB = 1024.0 * 1024.0
_NO_DRIVER = (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

_init_lock = threading.Lock()
_initialised = False


def _init() -> None:
    """Initialise NVML once per process; a failure is retried on the next call.

    NVML counts init calls, and we never shut it down: handles stay valid for the
    life of the process and readings are cheap.
    """
    global _initialised
    with _init_lock:
        if _initialised:
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) in _NO_DRIVER:
                raise DeviceUnavailable(
                    f"no NVIDIA driver found (NVML: {exc}); use --device cpu"
                ) from exc
            raise DeviceUnavailable(
                f"the NVIDIA driver cannot be used (NVML: {exc}); use --device cpu"
            ) from exc
        _initialised = True


def _nvml_error(device: str, exc: Exception) -> DeviceUnavailable:
    return DeviceUnavailable(f"{device}: NVML query failed ({exc})")


# How long a fresh allocation may take to show in NVML's per-process and free memory.
NVML_READING_LAG_S = 0.5


class NvmlDevice:
    """One GPU; each :meth:`read` is a fresh query of the driver."""

    __slots__ = ("_handle", "_id", "index", "name")

    def __init__(self, ordinal: int, index: int, handle: Any, name: str) -> None:
        self._id = f"cuda:{ordinal}"
        self._handle = handle
        self.index = index
        """The NVML index, which differs from the CUDA ordinal when devices are hidden."""
        self.name = name

    @property
    def id(self) -> str:
        return self._id

    @property
    def kind(self) -> str:
        return "cuda"

    @property
    def max_instances(self) -> int | None:
        return None

    @property
    def reading_lag_s(self) -> float:
        return NVML_READING_LAG_S

    def read(self, now: float) -> Reading:
        try:
            # Two queries, not one snapshot: processes first, so that memory allocated
            # in between lowers ``free`` without raising what our instances are seen
            # to hold, and is counted twice (safe) rather than not at all.
            procs = _compute_processes(self._handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
        except pynvml.NVMLError as exc:
            raise _nvml_error(self._id, exc) from exc
        per_pid: dict[int, float] = {}
        for proc in procs:
            # None where the platform does not attribute memory (Windows WDDM).
            used = proc.usedGpuMemory or 0
            per_pid[int(proc.pid)] = per_pid.get(int(proc.pid), 0.0) + used / MIB
        return Reading(now, mem.total / MIB, mem.free / MIB, per_pid)

    def track(self, pid: int) -> None:
        """NVML sees every process itself."""

    def untrack(self, pid: int) -> None:
        """NVML sees every process itself."""

    def __repr__(self) -> str:
        return f"NvmlDevice({self._id!r}, index={self.index}, name={self.name!r})"


def _compute_processes(handle: Any) -> list[Any]:
    try:
        return list(pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except pynvml.NVMLError_FunctionNotFound:
        # Drivers older than the v3 entry point.
        return list(pynvml.nvmlDeviceGetComputeRunningProcesses_v2(handle))


def _visible_indices(count: int, uuids: Sequence[str], visible: str | None) -> list[int]:
    """NVML indices in CUDA ordinal order, as ``CUDA_VISIBLE_DEVICES`` selects them.

    Like CUDA, the list ends at the first entry that names no device (or names
    one twice); entries are indices or (prefixes of) ``GPU-`` UUIDs.
    """
    if visible is None:
        return list(range(count))
    chosen: list[int] = []
    for raw in visible.split(","):
        token = raw.strip()
        index: int | None = None
        if token.lstrip("-").isdigit():
            index = int(token) if 0 <= int(token) < count else None
        elif token.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(token)]
            index = matches[0] if len(matches) == 1 else None
        if index is None or index in chosen:
            break
        chosen.append(index)
    return chosen


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def discover_gpus() -> list[NvmlDevice]:
    """All GPUs this process's workers can use; raises DeviceUnavailable if none."""
    _init()
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in handles] if visible else []
        order = _visible_indices(count, uuids, visible)
        devices = [
            NvmlDevice(
                ordinal, index, handles[index], _text(pynvml.nvmlDeviceGetName(handles[index]))
            )
            for ordinal, index in enumerate(order)
        ]
    except pynvml.NVMLError as exc:
        raise DeviceUnavailable(f"NVML cannot list GPUs ({exc}); use --device cpu") from exc
    if not devices:
        if count and visible is not None:
            raise DeviceUnavailable(
                f"no NVIDIA GPU visible (CUDA_VISIBLE_DEVICES={visible!r}); use --device cpu"
            )
        raise DeviceUnavailable("no NVIDIA GPU found (NVML reports 0 devices); use --device cpu")
    return devices


def nvml_available() -> bool:
    """Whether :func:`discover_gpus` would find at least one GPU."""
    try:
        discover_gpus()
    except DeviceUnavailable:
        return False
    return True


def process_gpu_memory(pid: int, devices: Sequence[NvmlDevice] | None = None) -> dict[str, float]:
    """MB that NVML attributes to ``pid`` on each device where it holds any.

    An empty result after a worker exited means the driver has taken its memory
    back; raises DeviceUnavailable when NVML cannot answer, because "unknown"
    must not be mistaken for "released".
    """
    held: dict[str, float] = {}
    for device in devices if devices is not None else discover_gpus():
        mb = device.read(0.0).processes.get(pid)
        if mb is not None:
            held[device.id] = mb
    return held
