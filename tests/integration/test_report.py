"""``vramscribe report`` on runs of the real runner, and on hand-written timelines.

The batch is scripted so the right answers are known: 6 jobs of 6 s of audio,
each worker starting in 0.3 s, loading for 0.5 s and transcribing at 6x (1 s),
on a device with room for exactly two instances, and one job that crashes on
its first attempt. It runs on a fake clock with fake workers (tests/scripted.py),
so the report must give back exactly the scripted numbers. A run made by the
command line with real worker processes is reported too.
"""

from __future__ import annotations

import base64
import json
import os
import random
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.conftest import write_wav
from tests.scripted import FakeClock, Script, drive
from vramscribe.core.jobs import Job
from vramscribe.core.retry import FailureKind
from vramscribe.core.settings import Settings
from vramscribe.devices.fake import FakeDevice
from vramscribe.devices.shared_fake import SharedFakeDevice
from vramscribe.engines.base import EngineOptions
from vramscribe.errors import VramscribeError
from vramscribe.report import (
    Report,
    Run,
    analyse,
    chrome_trace,
    find_run,
    load_run,
    report_command,
    to_html,
    write_charts,
)
from vramscribe.report.analysis import normalise_reason, reason_segments
from vramscribe.report.load import build_run
from vramscribe.runtime.fake_launcher import FakeLauncher
from vramscribe.runtime.runner import Runner, Task
from vramscribe.runtime.timeline import Timeline

JOBS = 6
AUDIO_S = 6.0
START_S = 0.3
LOAD_S = 0.5
SPEED_X = 6.0
PROCESS_S = AUDIO_S / SPEED_X
# Built-in estimate of "small" float16 on a GPU-like device is 1200 MB (+ a sliver
# for 6 s of audio); 2500 MB holds two instances and not a third.
MEMORY_MB = 1200.0
TOTAL_MB = 2500.0
CRASHING_JOB = "2"
# One step of the fake clock: every scripted time is seen within a tick.
TICK_S = 0.05
RUN_NAME = "20250101-120000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Batch:
    data: Path
    run_dir: Path
    run: Run
    report: Report


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    tmp = tmp_path_factory.mktemp("report")
    data = tmp / "data"
    run_dir = data / "runs" / RUN_NAME
    device = FakeDevice("fake:0", TOTAL_MB)
    # One instance per file, so that every job pays a start and a load the script sets.
    settings = Settings(safety_margin=0.0, max_loads_per_device=2, backoff_base_s=0.2, reuse=False)
    clock, launcher = FakeClock(), FakeLauncher()
    runner = Runner([device], settings, run_dir=run_dir, poll_s=0, clock=clock, launcher=launcher)
    timeline = Timeline(runner, run_dir / "timeline.jsonl")
    runner.listeners.append(timeline)
    for n in range(JOBS):
        audio = tmp / "in" / f"clip{n}.wav"
        engine = EngineOptions(engine="fake", model="small")
        job = Job(str(n), "small", AUDIO_S, compute_type="float16", submitted_at=clock.now)
        runner.add(Task(job, audio, engine, [("txt", tmp / "out" / f"clip{n}.txt")]))
    script = Script(START_S, LOAD_S, SPEED_X, MEMORY_MB)
    script.fail[(f"clip{CRASHING_JOB}.wav", 1)] = FailureKind.CRASH
    drive(runner, launcher, clock, device, script, dt=TICK_S)
    tasks = list(runner.tasks.values())
    timeline.close()
    assert all(t.job.state.value == "completed" for t in tasks), [t.job.error for t in tasks]
    run = load_run(run_dir)
    return Batch(data, run_dir, run, analyse(run))


# -- the scripted batch --------------------------------------------------------------
def test_scripted_times_come_back(batch: Batch) -> None:
    [model] = batch.report.models
    assert model.model == "small" and model.jobs == JOBS and model.completed == JOBS
    assert model.load_p50 == pytest.approx(LOAD_S)
    assert model.speed_x == pytest.approx(SPEED_X, rel=0.1)
    assert model.peak_mb == MEMORY_MB
    assert batch.report.audio_s == JOBS * AUDIO_S
    assert batch.report.speed_x is not None and batch.report.speed_x > 0
    assert len(batch.report.load_times) == JOBS + 1  # the crashed attempt loaded too


def test_two_instances_at_most_and_the_rest_wait_for_memory(batch: Batch) -> None:
    [device] = batch.report.devices
    assert device.id == "fake:0"
    assert device.max_instances == 2
    assert 0 < device.mean_instances <= 2
    # Jobs 3-6 cannot start before one of the first two has loaded and transcribed.
    waited = [j for j in batch.run.jobs.values() if (j.wait_s or 0) >= LOAD_S + PROCESS_S - 0.1]
    assert len(waited) >= JOBS - 2, [j.wait_s for j in batch.run.jobs.values()]
    for job in waited:
        labels = {label for _, _, label in reason_segments(job)}
        assert "waiting for memory on fake:0" in labels, labels
    reasons = {r.reason: r for r in batch.report.reasons}
    assert reasons["waiting for memory on fake:0"].jobs >= JOBS - 2
    assert batch.report.memory_wait_p50 is not None and batch.report.memory_wait_p50 > 0


def test_device_time_is_fully_accounted_for(batch: Batch) -> None:
    [device] = batch.report.devices
    split = device.time
    shares = sum(split.share(p) for p in ("loading", "transcribing", "held_back", "idle"))
    assert shares == pytest.approx(1.0, abs=0.01)
    assert split.total == pytest.approx(batch.report.wall_s, rel=0.01)
    assert split.transcribing > split.loading > 0
    # At least one load of each pair happens with nothing transcribing.
    assert split.loading >= LOAD_S
    assert device.memory_used is not None and 0 < device.memory_used <= 1


def test_the_crash_is_one_failure_and_one_retry(batch: Batch) -> None:
    assert dict(batch.report.failures) == {"crash": 1}
    assert batch.report.retries == 1
    assert batch.report.ooms == 0
    crashed = batch.run.jobs[CRASHING_JOB]
    assert [a.outcome for a in crashed.attempts] == ["pending", "completed"]
    assert crashed.attempts[0].failure is not None
    assert crashed.attempts[0].failure.kind == "crash"
    assert batch.report.loads == JOBS + 1
    # Every load after the first two replaced an instance of the same model just gone.
    assert batch.report.reloads == JOBS + 1 - 2
    assert batch.report.release_max is not None and batch.report.release_max >= 0


def test_findings_point_at_loading(batch: Batch) -> None:
    findings = batch.report.findings
    assert findings
    assert any("loading" in f for f in findings), findings
    assert any("retried" in f for f in findings), findings
    assert not any("out-of-memory" in f for f in findings), findings


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_charts_are_pngs_and_the_page_embeds_them(batch: Batch, tmp_path: Path) -> None:
    paths = write_charts(batch.run, tmp_path / "charts")
    assert [p.name for p in paths] == ["timeline.png", "load_times.png", "waits.png"]
    for path in paths:
        width, height = _png_size(path)
        assert width >= 600 and height >= 300, (path, width, height)
    assert _png_size(paths[0]) == (1400, 800)
    page = to_html(batch.report, paths)
    for path in paths:
        assert "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() in page
    assert page.count("<img ") == len(paths)
    for external in ("http://", "https://", "<script", "<link", "@import"):
        assert external not in page
    for finding in batch.report.findings:
        assert finding.split(";")[0] in page


def _check_nesting(events: list[dict[str, Any]]) -> None:
    """Slices on one thread must be disjoint or nested, as trace viewers require."""
    by_thread: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            by_thread[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        open_ends: list[int] = []
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], spans
            open_ends.append(end)


def test_chrome_trace_has_every_job_and_the_memory_counters(batch: Batch) -> None:
    trace = json.loads(json.dumps(chrome_trace(batch.run)))
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    for e in events:
        assert e["ph"] in ("X", "C", "M") and isinstance(e["pid"], int)
        if e["ph"] == "X":
            assert isinstance(e["ts"], int) and isinstance(e["dur"], int)
            assert e["ts"] >= 0 and e["dur"] >= 0
    complete = [e for e in events if e["ph"] == "X"]
    waited = 0
    for job in batch.run.jobs.values():
        mine = {(e["cat"], e["name"]) for e in complete if e["args"]["job"] == job.id}
        assert ("loading", job.input) in mine and ("processing", job.input) in mine, mine
        # The first two start the moment they are submitted; the others wait.
        assert (("waiting", job.input) in mine) == bool(job.wait_s), (job.id, job.wait_s)
        waited += ("waiting", job.input) in mine
    assert waited == JOBS - 2
    counters = [e for e in events if e["ph"] == "C" and e["name"] == "memory MB"]
    assert counters
    assert set(counters[0]["args"]) == {"others", "ours", "reserved", "free"}
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert "fake:0" in names
    lanes = {e["tid"] for e in complete if e["cat"] == "processing"}
    assert lanes == {1, 2}
    _check_nesting(events)
    last = max(e["ts"] + e["dur"] for e in complete)
    assert last <= batch.report.wall_s * 1e6 + 1


def test_report_command_writes_everything(
    batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRAMSCRIBE_DATA", str(batch.data))
    console = Console(record=True, width=140)
    html, png, trace = tmp_path / "r.html", tmp_path / "png", tmp_path / "trace.json"
    assert report_command(None, html, png, trace, console) == 0
    text = console.export_text()
    assert f"run {RUN_NAME}" in text and "fake:0" in text and "findings" in text
    assert sorted(p.name for p in png.iterdir()) == ["load_times.png", "timeline.png", "waits.png"]
    assert html.read_text().count("data:image/png;base64,") == 3
    assert json.loads(trace.read_text())["traceEvents"]
    # A page without --png still carries its charts.
    only_html = tmp_path / "only.html"
    assert report_command(RUN_NAME, only_html, None, None, Console(record=True)) == 0
    assert only_html.read_text().count("data:image/png;base64,") == 3


def test_a_run_made_by_the_command_line_reports(tmp_path: Path) -> None:
    gpu = SharedFakeDevice.create(tmp_path / "gpu.json", total_mb=TOTAL_MB)
    for n in range(3):
        write_wav(tmp_path / "in" / f"c{n}.wav", 2.0)
    fake = {"device_path": str(gpu.path), "memory_mb": MEMORY_MB, "speed_x": 8, "load_s": 0.3}
    done = subprocess.run(
        [sys.executable, "-m", "vramscribe", "transcribe", str(tmp_path / "in"),
         "--device", f"fake:{gpu.path}", "--engine", "fake", "--model", "small",
         "--fake-config", json.dumps(fake), "--safety-margin", "0", "--format", "txt"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    console = Console(record=True, width=140)
    assert report_command(None, None, None, None, console) == 0
    report = analyse(load_run(find_run(None)))
    assert report.completed == 3 and report.audio_s == pytest.approx(6.0)
    assert report.devices[0].max_instances == 2
    assert all(w >= 0 for w in report.waits) and len(report.waits) == 3


# -- finding runs --------------------------------------------------------------------
def _timeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "timeline.jsonl"
    path.write_text(json.dumps({"t": 1.0, "type": "run_start", "devices": []}) + "\n")
    return path


FIND_ERRORS: list[tuple[str, Callable[[Path], str | None], str]] = [
    ("no runs folder", lambda d: None, "no runs found under"),
    ("empty runs folder", lambda d: (d / "runs").mkdir(parents=True) or None, "no runs found"),
    ("a run without a timeline", lambda d: (d / "runs" / "x").mkdir(parents=True) or None,
     "no runs found"),
    ("unknown name", lambda d: _timeline(d / "runs" / "a") and "nope", "no run named 'nope'"),
    ("missing path", lambda d: str(d / "gone" / "run"), "no such run folder"),
    ("folder without timeline", lambda d: (d / "f").mkdir() or str(d / "f"),
     "has no timeline.jsonl"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "message"), [c[1:] for c in FIND_ERRORS],
                         ids=[c[0] for c in FIND_ERRORS])  # fmt: skip
def test_find_run_says_why_there_is_no_run(
    setup: Callable[[Path], str | None], message: str, tmp_path: Path
) -> None:
    data = Path(os.environ["VRAMSCRIBE_DATA"])
    data.mkdir(parents=True, exist_ok=True)
    arg = setup(data)
    with pytest.raises(VramscribeError, match=message):
        find_run(arg)
    console = Console(record=True, width=1000)
    assert report_command(arg, None, None, None, console) == 2
    assert message.split("'")[0] in console.export_text()


def test_find_run_picks_the_latest_and_accepts_names_folders_and_files(tmp_path: Path) -> None:
    runs = Path(os.environ["VRAMSCRIBE_DATA"]) / "runs"
    for name in ["20241231-235959", "20250101-120000", "20250101-120000-2", "20250101-120000-10"]:
        _timeline(runs / name)
    assert find_run(None) == runs / "20250101-120000-10" / "timeline.jsonl"
    assert find_run("20250101-120000-2") == runs / "20250101-120000-2" / "timeline.jsonl"
    assert find_run(str(runs / "20241231-235959")) == runs / "20241231-235959" / "timeline.jsonl"
    copy = tmp_path / "kept.jsonl"
    copy.write_text((runs / "20241231-235959" / "timeline.jsonl").read_text())
    assert find_run(str(copy)) == copy
    assert load_run(copy).name == "kept"


def test_an_empty_timeline_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "timeline.jsonl").write_text("not json\n")
    with pytest.raises(VramscribeError, match="holds no events"):
        load_run(tmp_path)


# -- analysis of hand-written timelines ----------------------------------------------
def _ev(t: float, kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "type": kind, **fields}


def _start(devices: list[str], margin: float = 0.1) -> dict[str, Any]:
    return _ev(0.0, "run_start", devices=[{"id": d, "kind": "cuda"} for d in devices],
               settings={"safety_margin": margin, "max_loads_per_device": 2,
                         "max_instances_total": 64})  # fmt: skip


def _job(
    job: str,
    submitted: float,
    start: float,
    ready: float,
    end: float,
    *,
    device: str = "gpu:0",
    model: str = "small",
    audio_s: float = 10.0,
    load_s: float = 0.8,
    release_s: float = 0.0,
    outcome: str = "completed",
    attempt: int = 1,
    failure: str | None = None,
) -> list[dict[str, Any]]:
    """One attempt of one job: submitted (if first), loading, processing, its end, release."""
    base = {"job": job, "model": model, "input": f"{job}.wav"}
    state = {**base, "device": device, "attempt": attempt, "audio_s": audio_s, "priority": 50}
    out = []
    if attempt == 1:
        out.append(_ev(submitted, "submitted", **base, audio_s=audio_s, priority=50))
    out += [
        _ev(start, "state", **state, **{"from": "pending", "to": "loading"}, reason="starting"),
        _ev(ready, "loaded", **base, device=device, load_s=load_s, memory_mb=1000.0,
            reserved_mb=1100.0),
        _ev(ready, "state", **state, **{"from": "loading", "to": "processing"}, reason="loaded"),
    ]  # fmt: skip
    if failure is not None:
        out.append(_ev(end, "failure", **base, failure=failure, message="boom", device=device))
    out.append(_ev(end, "state", **state, **{"from": "processing", "to": outcome}, reason="x"))
    out.append(_ev(end + release_s, "released", **base, device=device, release_s=release_s,
                   pid=100 + attempt))  # fmt: skip
    return out


def _reason(t: float, job: str, reason: str) -> dict[str, Any]:
    return _ev(t, "reason", job=job, model="small", input=f"{job}.wav", reason=reason)


def _samples(device: str, until: int, others: float = 0.0) -> list[dict[str, Any]]:
    return [
        _ev(float(t), "device", device=device, total_mb=10000.0, free_mb=5000.0,
            ours_mb=2000.0, others_mb=others, reserved_mb=1000.0, instances=1, loading=0,
            pending=0)
        for t in range(until)
    ]  # fmt: skip


@dataclass(frozen=True)
class Case:
    name: str
    events: list[dict[str, Any]]
    expect: dict[str, float | int | None]
    findings: tuple[str, ...] = ()
    not_findings: tuple[str, ...] = ()


def _numbers(r: Report) -> dict[str, float | int | None]:
    m, d = r.models[0], r.devices[0]
    return {
        "wall": r.wall_s, "audio": r.audio_s, "speed": r.speed_x, "wait_p50": m.wait_p50,
        "load_p50": m.load_p50, "ready_p50": m.ready_p50, "model_speed": m.speed_x,
        "loading": d.time.loading, "transcribing": d.time.transcribing,
        "held_back": d.time.held_back, "idle": d.time.idle, "loads": r.loads,
        "reloads": r.reloads, "ooms": r.ooms, "retries": r.retries,
        "memory_wait_p50": r.memory_wait_p50, "release_max": r.release_max,
        "max_instances": d.max_instances, "mean_instances": d.mean_instances,
        "memory_used": d.memory_used, "others_share": d.others_share,
    }  # fmt: skip


CASES = [
    Case(
        "one job, every phase",
        [_start(["gpu:0"]), *_job("a", 0.0, 2.0, 3.0, 5.0, release_s=0.5),
         _reason(0.5, "a", "waiting for memory on gpu:0 (needs 1.2 GiB, 0.3 free after "
                 "reservations)"), _ev(6.0, "run_end")],
        {"wall": 6.0, "audio": 10.0, "speed": 10 / 6, "wait_p50": 2.0, "load_p50": 0.8,
         "ready_p50": 1.0, "model_speed": 5.0, "held_back": 2.0, "loading": 1.0,
         "transcribing": 2.0, "idle": 1.0, "loads": 1, "reloads": 0, "memory_wait_p50": 1.5,
         "release_max": 0.5, "max_instances": 1, "mean_instances": 0.5},
        not_findings=("out-of-memory", "memory took"),
    ),
    Case(
        "back-to-back loads are reloads, a late one is not",
        [_start(["gpu:0"]), *_job("a", 0.0, 0.0, 1.0, 3.0), *_job("b", 0.0, 3.0, 4.0, 6.0),
         *_job("c", 0.0, 20.0, 21.0, 23.0), *_job("d", 0.0, 21.0, 22.0, 24.0, device="gpu:1"),
         _ev(24.0, "run_end")],
        {"loads": 4, "reloads": 1, "loading": 3.0, "transcribing": 6.0, "held_back": 14.0,
         "idle": 1.0, "max_instances": 1},
    ),
    Case(
        "an out-of-memory failure is retried",
        [_start(["gpu:0"]), *_job("a", 0.0, 0.0, 1.0, 2.0, outcome="pending", failure="oom"),
         _reason(2.0, "a", "retrying in 2 s"), *_job("a", 0.0, 4.0, 5.0, 7.0, attempt=2),
         _ev(7.0, "run_end")],
        {"ooms": 1, "retries": 1, "loads": 2, "reloads": 1, "model_speed": 5.0,
         "held_back": 2.0, "wait_p50": 0.0},
        findings=("1 out-of-memory failure on gpu:0", "--safety-margin (now 0.10)", "retried"),
    ),
    Case(
        "an idle device while jobs wait for memory on another",
        [_start(["gpu:0", "gpu:1"]), *_job("a", 0.0, 0.0, 1.0, 10.0),
         _reason(0.1, "b", "waiting: gpu:0 has 0.3 GiB free after reservations; "
                 "a model is loading on gpu:1"),
         _reason(1.0, "b", "waiting for memory on gpu:0 (needs 3.0 GiB, 0.5 free after "
                 "reservations)"),
         *_job("b", 0.0, 10.0, 11.0, 15.0), _ev(15.0, "run_end")],
        {"memory_wait_p50": 9.9, "held_back": 0.0, "transcribing": 13.0},
        findings=("gpu:1 was idle 66% of the time while jobs waited for memory on gpu:0",
                  "jobs waited a median of 9.9 s for memory", "lower --safety-margin"),
    ),
    Case(
        "slow releases and a big neighbour",
        [_start(["gpu:0"]), *_job("a", 0.0, 0.0, 1.0, 3.0, release_s=2.3),
         *_samples("gpu:0", 4, others=3000.0), _ev(6.0, "run_end")],
        {"release_max": 2.3, "memory_used": 0.6, "others_share": 0.3},
        findings=("memory took up to 2.3 s to come back", "held 30% of gpu:0's memory"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_analysis_of_a_hand_written_timeline(case: Case, tmp_path: Path) -> None:
    shuffled = list(case.events)
    random.Random(7).shuffle(shuffled)  # the file is not in time order either
    lines = [json.dumps(e) for e in shuffled] + ['{"t": 3.0, "type": "sta']  # a torn last line
    (tmp_path / "timeline.jsonl").write_text("\n".join(lines))
    report = analyse(load_run(tmp_path))
    assert report == analyse(build_run(case.events, tmp_path, tmp_path.name))
    got = _numbers(report)
    for key, want in case.expect.items():
        assert got[key] == pytest.approx(want), key
    assert sum(report.devices[0].time.share(p) for p in
               ("loading", "transcribing", "held_back", "idle")) == pytest.approx(1.0)  # fmt: skip
    text = " | ".join(report.findings)
    for part in case.findings:
        assert part in text, text
    for part in case.not_findings:
        assert part not in text, text


def test_lanes_never_overlap_and_late_release_stamps_do_not_open_new_lanes(
    tmp_path: Path,
) -> None:
    events = [
        _start(["gpu:0"]),
        *_job("a", 0.0, 0.0, 1.0, 2.0, release_s=0.1),
        *_job("b", 0.0, 0.0, 1.0, 1.9),
        *_job("c", 0.0, 1.9, 2.5, 3.0),  # a is still running: c takes b's lane
        *_job("d", 0.0, 2.05, 2.5, 3.0),  # a's release is stamped 0.05 s after d starts
        _ev(3.0, "run_end"),
    ]
    run = build_run(events, tmp_path, "lanes")
    lanes = {a.job: a.lane for a in run.attempts}
    assert lanes == {"a": 0, "b": 1, "c": 1, "d": 0}
    assert run.jobs["a"].attempts[0].release_until == 2.05
    _check_nesting(chrome_trace(run)["traceEvents"])


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("waiting for memory on cuda:0 (needs 1.2 GiB, 0.3 free after reservations)",
         "waiting for memory on cuda:0"),
        ("waiting for memory on cuda:0 (needs 1.2 GiB, 0.3 free after reservations: waiting "
         "for our running jobs)", "waiting for memory on cuda:0"),
        ("blocked by other processes' memory on cuda:0 (needs 4.5 GiB, others hold 6.0 of "
         "8.0 GiB, 1.2 usable) (gives up in 4 min)",
         "blocked by other processes' memory on cuda:0"),
        ("waiting: cuda:1 has 0.1 GiB free after reservations", "waiting for memory on cuda:1"),
        ("waiting: a model is loading on cuda:0", "a model is loading on cuda:0"),
        ("waiting: instance cap reached on cuda:0 (8/8); cuda:1 has 2.0 GiB free after "
         "reservations", "instance cap reached on cuda:0; waiting for memory on cuda:1"),
        ("instance cap reached (64/64)", "instance cap reached"),
        ("held back for job 17 (higher priority) on cuda:0",
         "held back for a higher-priority job on cuda:0"),
        ("held back for job 9f3ac1 (higher priority)", "held back for a higher-priority job"),
        ("retrying in 12 s", "retrying"),
        ("queued behind job 3 and 1000 others", "queued behind other jobs"),
        ("waiting behind job 3 (strict order)", "waiting behind another job (strict order)"),
        ("waiting: cuda:0 is saturated: job 1ab2d569e23f4c9e starts there first",
         "cuda:0 is saturated"),
        ("waiting: cuda:0 is cooling down after running out of memory",
         "cuda:0 is cooling down after running out of memory"),
        ("something new after 3 tries (2.5 s)", "something new after N tries"),
        ("", "not yet planned"),
    ],
)  # fmt: skip
def test_pending_reasons_are_normalised(reason: str, label: str) -> None:
    assert normalise_reason(reason) == label


def test_warm_instances_are_counted_as_loads_avoided(tmp_path: Path) -> None:
    """The same scripted batch with warm reuse: two loads, the other four jobs avoid one."""
    device = FakeDevice("fake:0", TOTAL_MB)
    settings = Settings(safety_margin=0.0, max_loads_per_device=2)
    clock, launcher = FakeClock(), FakeLauncher()
    run_dir = tmp_path / "runs" / "warm"
    runner = Runner([device], settings, run_dir=run_dir, poll_s=0, clock=clock, launcher=launcher)
    timeline = Timeline(runner, run_dir / "timeline.jsonl")
    runner.listeners.append(timeline)
    for n in range(JOBS):
        job = Job(str(n), "small", AUDIO_S, compute_type="float16", submitted_at=clock.now)
        engine = EngineOptions(engine="fake", model="small")
        runner.add(Task(job, tmp_path / f"c{n}.wav", engine, [("txt", tmp_path / f"c{n}.txt")]))
    drive(runner, launcher, clock, device, Script(START_S, LOAD_S, SPEED_X, MEMORY_MB), dt=TICK_S)
    timeline.close()
    report = analyse(load_run(run_dir))
    assert report.completed == JOBS
    assert (report.loads, report.warm_starts) == (2, JOBS - 2)
    assert report.devices[0].loads == 2 and report.reloads == 0
    assert not any("afresh" in f for f in report.findings), report.findings
    console = Console(record=True, width=160)
    assert report_command(str(run_dir), None, None, None, console) == 0
    assert "2 / 4" in console.export_text()
