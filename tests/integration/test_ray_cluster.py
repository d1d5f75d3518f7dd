"""Many machines on Ray: a local multi-node cluster (``ray.cluster_utils.Cluster``).

Each node is labelled with its own device (a shared fake GPU file, or the CPU)
and runs a real node agent with real worker processes; the head holds a real
SQLite store. Kept light for a small machine: a head without CPUs for tasks,
nodes with one CPU each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.conftest import SPEECH_AUDIO, write_wav
from vramscribe.cluster.ray_head import DEVICE_LABEL, RayHead
from vramscribe.core.jobs import JobState
from vramscribe.core.settings import Settings
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.store import Store
from vramscribe.submit.build import build_job, choose_model
from vramscribe.submit.request import JobRequest
from vramscribe.wer import word_error_rate

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


def submit(
    store: Store, folder: Path, n: int, seconds: float, model: str, gpu: Path, speed: float = 4.0
) -> str:
    audio = write_wav(folder / "in" / f"clip{n:02d}.wav", seconds)
    fake = {"device_path": str(gpu), "memory_mb": FAKE_MB[model], "speed_x": speed, "load_s": 0.3}
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


def test_a_job_that_fits_no_node_fails_with_its_reason_and_the_rest_run(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    """large-v3 in float32 (about 8.8 GB) on nodes of 6000 MB: every node's plan rejects it,
    so it fails at once, as on one machine, instead of waiting forever."""
    gpu = next(iter(fake_cluster.gpus.values())).path
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        small = submit(store, tmp_path, 0, 2.0, "small", gpu)
        audio = write_wav(tmp_path / "in" / "big.wav", 2.0)
        request = JobRequest(input=audio, model="large-v3", compute_type="float32",
                             engine="fake", fake={"device_path": str(gpu), "memory_mb": 8000},
                             outputs=(("json", tmp_path / "out" / "big.json"),))  # fmt: skip
        big = build_job(request, choose_model("large-v3", "fake"), cpu_threads=1, now=1e9,
                        audio_s=2.0)  # fmt: skip
        store.add(big.record)
        head = RayHead(store, Settings(), tmp_path / "head", address=None)
        load(store, head, [small, big.record.id])
        try:
            head.run(timeout_s=300)
        finally:
            head.close()
        check_once(store, [small])
        record = store.get(big.record.id)
        assert record is not None and record.status is JobState.FAILED
        assert "fits no node of the cluster" in (record.error or ""), record.error
        assert all(f"node {n[:8]}" in (record.error or "") for n in fake_cluster.gpus)


def test_devices_lists_every_node_and_its_device(fake_cluster: FakeCluster) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vramscribe", "devices", "--ray", fake_cluster.cluster.address],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if "fake:0" in line]
    assert len(rows) == 3, out.stdout  # one fake GPU per node, read on that node
    for node_id in fake_cluster.gpus:
        row = next(line for line in rows if node_id[:8] in line)
        assert row.count("5.9 GiB") == 2  # 6000 MB in all, all of it free


def test_the_cli_runs_a_batch_on_the_cluster(fake_cluster: FakeCluster, tmp_path: Path) -> None:
    gpu = next(iter(fake_cluster.gpus.values())).path
    for n in range(6):
        write_wav(tmp_path / "in" / f"c{n}.wav", 2.0 + n)
    fake = {"device_path": str(gpu), "memory_mb": 1100, "speed_x": 4.0, "load_s": 0.3}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vramscribe",
            "transcribe",
            str(tmp_path / "in"),
            "--model",
            "small",
            "--engine",
            "fake",
            "--fake-config",
            json.dumps(fake),
            "--format",
            "json",
            "--ray",
            fake_cluster.cluster.address,
            "--shared-path",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on the Ray cluster" in out.stderr
    for n in range(6):
        data = json.loads((tmp_path / "in" / f"c{n}.json").read_text())
        assert abs(data["duration_s"] - (2.0 + n)) < 0.1


def test_the_service_as_head_runs_uploads_on_the_nodes_and_shows_every_node(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    from tests.acceptance.conftest import start_service
    from tests.acceptance.test_service_fake import upload_clips, wait_all

    gpu = next(iter(fake_cluster.gpus.values())).path
    fake = {"device_path": str(gpu), "memory_mb": 1100, "speed_x": 4.0, "load_s": 0.3}
    ray.shutdown()  # the service is the cluster's driver now
    service = start_service(
        tmp_path, "--ray", fake_cluster.cluster.address, "--model", "small", fake=fake
    )
    try:
        with service.client() as c:
            ids = upload_clips(c, tmp_path / "in", 8, 3.0)
            jobs = wait_all(c, ids)
            assert [j["status"] for j in jobs.values()] == ["completed"] * 8
            for job in jobs.values():
                assert [h["to"] for h in job["history"]].count("completed") == 1
            devices = c.get("/v1/devices").json()["devices"]
            assert {d["node"] for d in devices} == set(fake_cluster.gpus)
            metrics = c.get("/metrics").text
            for node in fake_cluster.gpus:
                assert f'device="{node[:8]}/fake:0"' in metrics
    finally:
        service.proc.terminate()
        service.proc.wait(timeout=60)
        ray.init(address=fake_cluster.cluster.address, include_dashboard=False, log_to_driver=False)


def test_a_node_removed_mid_run_gives_its_jobs_back_and_nothing_runs_twice(
    fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    gpu = next(iter(fake_cluster.gpus.values())).path
    handles = {n.node_id: n for n in fake_cluster.cluster.list_all_nodes() if not n.head}
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        ids = [submit(store, tmp_path, n, 20.0, "small", gpu, speed=1.0) for n in range(9)]
        head = RayHead(store, Settings(), tmp_path / "head", address=None)
        load(store, head, ids)
        victim = None
        try:
            while head.busy():
                head.step()
                running = {
                    job: node
                    for job, node in head.where.items()
                    if head.tasks[job].job.state is JobState.PROCESSING
                }
                if victim is None and len(set(running.values())) >= 2:
                    victim = next(iter(running.values()))
                    fake_cluster.cluster.remove_node(handles[victim], allow_graceful=False)
        finally:
            head.close()
        assert victim is not None, "no node ran anything"
        check_once(store, ids)
        given_back = []
        for job_id in ids:
            record = store.get(job_id)
            assert record is not None
            if any(f"node {victim} was lost" in h.reason for h in record.history):
                given_back.append(job_id)
                ran_on = [node for job, node in head.placements if job == job_id]
                assert victim in ran_on and ran_on[-1] != victim, ran_on
        assert given_back, "the removed node had no job to give back"
    assert victim in head.lost
    for node, device in fake_cluster.gpus.items():
        if node != victim:
            assert device.true_state().oom_events == 0


def test_the_real_engine_on_two_cpu_nodes_is_word_perfect(tmp_path: Path) -> None:
    ray.shutdown()  # the module's fake cluster has its own driver connection
    cluster = start_cluster(tmp_path, ["cpu", "cpu"])
    refs = json.loads((SPEECH_AUDIO / "references.json").read_text())
    reference = refs["jfk.flac"] if isinstance(refs["jfk.flac"], str) else refs["jfk.flac"]["text"]
    try:
        with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
            request = JobRequest(
                input=SPEECH_AUDIO / "jfk.flac",
                model="tiny.en",
                outputs=(("txt", tmp_path / "out" / "jfk.txt"), ("json", tmp_path / "jfk.json")),
            )
            model = choose_model("tiny.en", "faster-whisper")
            new = build_job(request, model, cpu_threads=1, now=1e9, audio_s=11.0)
            store.add(new.record)
            head = RayHead(store, Settings(), tmp_path / "head", address=None)
            load(store, head, [new.record.id])
            try:
                head.run(timeout_s=300)
            finally:
                head.close()
            record = store.get(new.record.id)
            assert record is not None and record.status is JobState.COMPLETED, record
    finally:
        stop_cluster(cluster)
    assert word_error_rate(reference, (tmp_path / "out" / "jfk.txt").read_text()) == 0.0
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert data["model"] == "tiny.en" and abs(data["duration_s"] - 11.0) < 0.2
