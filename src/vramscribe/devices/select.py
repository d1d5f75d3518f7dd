"""Turn what the user typed (``auto``, ``cpu``, ``cuda:0,cuda:1``) into devices."""

from __future__ import annotations

from pathlib import Path

from vramscribe.devices.base import Device
from vramscribe.errors import DeviceUnavailable


def pick_devices(spec: str, cpu_threads: int = 1) -> list[Device]:
    """``auto``: every NVIDIA GPU if NVML finds one, else the CPU."""
    from vramscribe.devices.cpu import CpuDevice

    if spec == "cpu":
        return [CpuDevice(threads_per_instance=cpu_threads)]
    if spec.startswith("fake:"):
        from vramscribe.devices.shared_fake import SharedFakeDevice

        return [SharedFakeDevice(Path(spec.removeprefix("fake:")))]
    from vramscribe.devices.nvml import discover_gpus, nvml_available

    if spec == "auto":
        if nvml_available():
            return list(discover_gpus())
        return [CpuDevice(threads_per_instance=cpu_threads)]
    gpus = {g.id: g for g in discover_gpus()}
    if spec == "cuda":
        return list(gpus.values())
    wanted = [s.strip() for s in spec.split(",")]
    missing = [w for w in wanted if w not in gpus]
    if missing:
        raise DeviceUnavailable(
            f"no such device {', '.join(missing)} (found: {', '.join(gpus) or 'none'})"
        )
    return [gpus[w] for w in wanted]
