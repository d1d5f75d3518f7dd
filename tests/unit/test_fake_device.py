import pytest

from vramscribe.devices.fake import FakeDevice
from vramscribe.errors import DeviceOutOfMemory


def test_readings_lag_behind_allocations() -> None:
    dev = FakeDevice("fake:0", 1000, lag_s=0.5)
    dev.allocate(1, 300, now=10.0)
    assert dev.reading(10.2).free_mb == 1000
    assert dev.reading(10.2).processes == {}
    assert dev.reading(10.5).free_mb == 700
    assert dev.reading(10.5).processes == {1: 300}
    dev.release(1, now=20.0)
    assert dev.reading(20.4).free_mb == 700
    assert dev.reading(20.5).free_mb == 1000


def test_allocation_beyond_real_total_fails_even_if_reading_looks_free() -> None:
    dev = FakeDevice("fake:0", 1000, lag_s=5)
    dev.allocate(1, 800, now=0)
    assert dev.reading(1).free_mb == 1000
    with pytest.raises(DeviceOutOfMemory, match="out of memory"):
        dev.allocate(2, 300, now=1)
    assert dev.oom_events == 1
    assert dev.used == {1: 800}


def test_foreign_script_changes_use_over_time_and_counts_crowding() -> None:
    dev = FakeDevice("fake:0", 1000, foreign_script=[(0, 200), (60, 500), (120, 900)])
    dev.advance(0)
    assert dev.reading(0).free_mb == 800
    assert dev.reading(0).processes == {}
    dev.allocate(1, 300, now=30)
    dev.advance(60)
    assert dev.free_mb == 200
    dev.advance(120)
    assert dev.foreign_oom_events == 1
    assert dev.free_mb == 200
    assert dev.next_script_time() is None
