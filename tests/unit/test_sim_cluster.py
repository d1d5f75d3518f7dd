"""Capacity planning for several machines: ``--gpus 4x(2x24g)``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_wav
from vramscribe.errors import ScenarioError
from vramscribe.sim.capacity import parse_gpus


def test_machines_of_gpus_are_named_per_machine() -> None:
    gpus = parse_gpus("4x(2x24g)")
    assert [g.id for g in gpus][:3] == ["node0/cuda:0", "node0/cuda:1", "node1/cuda:0"]
    assert len(gpus) == 8 and {g.total_mb for g in gpus} == {24 * 1024}
    assert len(parse_gpus("2x(1x80g,1x16g)")) == 4
    with pytest.raises(ScenarioError, match="cannot read"):
        parse_gpus("4x(two)")


def test_simulate_plans_a_cluster(tmp_path: Path) -> None:
    for n in range(6):
        write_wav(tmp_path / f"f{n}.wav", 30.0)
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "simulate", str(tmp_path), "--gpus", "4x(2x24g)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "on 8 GPU(s)" in out.stdout + out.stderr
