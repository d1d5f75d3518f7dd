"""Many machines on Ray: a local multi-node cluster (``ray.cluster_utils.Cluster``).

Each node is labelled with its own device (a shared fake GPU file, or the CPU)
and runs a real node agent with real worker processes; the head holds a real
SQLite store. Kept light for a small machine: a head without CPUs for tasks,
nodes with one CPU each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.conftest import write_wav
from vramscribe.cluster.ray_head import DEVICE_LABEL, RayHead
from vramscribe.core.jobs import JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.store import Store
from vramscribe.submit.build import build_job, choose_model
from vramscribe.submit.request import JobRequest

GPU_MB = 6000.0
FAKE_MB = {"small": 1100, "medium": 2400}
PRIORITIES = (10, 50, 90)


@dataclass
class FakeCluster:
    cluster: Cluster
    gpus: dict[str, SharedFakeDevice]
    """Ray node id -> that node's fake GPU."""
    folder: Path


def start_cluster(folder: Path, devices: list[str]) -> Cluster:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    for device in devices:
        cluster.add_node(num_cpus=1, labels={DEVICE_LABEL: device})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    folder = tmp_path_factory.mktemp("ray")
    os.environ["VRAMSCRIBE_HOST_DIR"] = str(folder / "host")
    paths = [folder / f"gpu{n}.json" for n in range(3)]
    for path in paths:
        SharedFakeDevice.create(path, total_mb=GPU_MB)
    cluster = start_cluster(folder, [f"fake:{p}" for p in paths])
    try:
        gpus = {
            str(n["NodeID"]): SharedFakeDevice(n["Labels"][DEVICE_LABEL].removeprefix("fake:"))
            for n in ray.nodes()
            if DEVICE_LABEL in (n.get("Labels") or {})
        }
        assert len(gpus) == 3
        yield FakeCluster(cluster, gpus, folder)
    finally:
        stop_cluster(cluster)


def submit(store: Store, folder: Path, n: int, seconds: float, model: str, gpu: Path) -> str:
    audio = write_wav(folder / "in" / f"clip{n:02d}.wav", seconds)
    fake = {"device_path": str(gpu), "memory_mb": FAKE_MB[model], "speed_x": 4.0, "load_s": 0.3}
    request = JobRequest(
        input=audio,
        model=model,
        priority=PRIORITIES[n % 3],
        engine="fake",
        fake=fake,
        outputs=(("json", folder / "out" / f"clip{n:02d}.json"),),
    )
    new = build_job(request, choose_model(model, "fake"), cpu_threads=1, now=1e9, audio_s=seconds)
    store.add(new.record)
    return new.record.id


def load(store: Store, head: RayHead, ids: list[str]) -> None:
    from vramscribe.runtime.persist import task_from_record

    for job_id in ids:
        record = store.get(job_id)
        assert record is not None
        head.add(task_from_record(record))


def check_once(store: Store, ids: list[str]) -> None:
    for job_id in ids:
        record = store.get(job_id)
        assert record is not None and record.status is JobState.COMPLETED, record
        assert [h.to_state for h in record.history].count(JobState.COMPLETED) == 1
        (_, out) = record.outputs[0]
        assert json.loads(Path(out).read_text())["segments"]


def test_sixty_jobs_of_mixed_models_and_priorities_run_once_across_three_nodes(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    gpu = next(iter(fake_cluster.gpus.values())).path  # each agent points it at its own GPU
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        ids = [
            submit(store, tmp_path, n, 1.0 + n % 4, ("small", "medium")[n % 2], gpu)
            for n in range(60)
        ]
        head = RayHead(store, Settings(), tmp_path / "head", address=None)
        load(store, head, ids)
        try:
            head.run(timeout_s=600)
        finally:
            head.close()
        check_once(store, ids)
    assert len({node for _, node in head.placements}) >= 2
    assert len(head.placements) == 60  # each job leased once
    for device in fake_cluster.gpus.values():
        assert device.true_state().oom_events == 0
