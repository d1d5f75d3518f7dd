"""NVML discovery must fail clearly without a driver and work with one.

The same tests run on machines with and without NVIDIA GPUs; they branch on
what the machine has instead of skipping, so CI (no GPU) and a GPU host both
check something real.
"""

import os

import pytest

from vramscribe.devices.nvml import (
    _visible_indices,
    discover_gpus,
    nvml_available,
    process_gpu_memory,
)
from vramscribe.errors import DeviceUnavailable


def test_discovery_reports_gpus_or_says_to_use_the_cpu() -> None:
    if not nvml_available():
        with pytest.raises(DeviceUnavailable, match="--device cpu"):
            discover_gpus()
        return
    devices = discover_gpus()
    assert devices
    assert [d.id for d in devices] == [f"cuda:{i}" for i in range(len(devices))]
    for device in devices:
        assert device.kind == "cuda"
        assert device.max_instances is None
        reading = device.read(123.0)
        assert reading.time == 123.0
        assert reading.total_mb > 0
        assert 0 <= reading.free_mb <= reading.total_mb
        assert all(mb >= 0 for mb in reading.processes.values())


def test_process_memory_is_never_guessed_without_nvml() -> None:
    if not nvml_available():
        with pytest.raises(DeviceUnavailable):
            process_gpu_memory(os.getpid())
        return
    held = process_gpu_memory(os.getpid())
    ids = {d.id for d in discover_gpus()}
    assert set(held) <= ids
    assert all(mb >= 0 for mb in held.values())


UUIDS = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-abcd-3333"]


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("-1", []),
        ("2,0", [2, 0]),
        (" 1 , 2 ", [1, 2]),
        ("1,7,2", [1]),  # CUDA stops at the first entry that names no device
        ("0,0", [0]),
        ("GPU-bbbb", [1]),
        ("GPU-a,1", []),  # an ambiguous prefix names no device
        ("GPU-abcd-3333,0", [2, 0]),
        ("MIG-1234", []),
    ],
)
def test_cuda_ordinals_follow_cuda_visible_devices(
    visible: str | None, expected: list[int]
) -> None:
    """Device ids are what a worker's CUDA sees, so the planner places jobs where they run."""
    assert _visible_indices(3, UUIDS, visible) == expected
