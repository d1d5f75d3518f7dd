"""The Python API as a user calls it: the real tiny.en model on real speech, on the CPU."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import vramscribe
from tests.conftest import EXAMPLES, ROOT, SPEECH_AUDIO
from vramscribe.errors import InvalidRequest, UnknownModel
from vramscribe.wer import word_error_rate

pytestmark = pytest.mark.slow
REFS = json.loads((SPEECH_AUDIO / "references.json").read_text())
JFK = REFS["jfk.flac"]["text"]


def copy(name: str, folder: Path, as_name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (as_name or name)
    shutil.copy(SPEECH_AUDIO / name, target)
    return target


def our_workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def test_transcribe_yields_results_in_completion_order(tmp_path: Path) -> None:
    long = copy("multilingual.mp3", tmp_path / "in")  # 60 s of speech
    short = copy("jfk.flac", tmp_path / "in")  # 11 s
    broken = tmp_path / "in" / "broken.wav"
    broken.write_text("not audio\n" * 50)
    missing = tmp_path / "in" / "missing.flac"
    results = list(
        vramscribe.transcribe([long, short, broken, missing], model="tiny.en", device="cpu")
    )
    assert sorted(r.path for r in results) == sorted([long, short, broken, missing])
    by_path = {r.path: r for r in results}
    # Both files that cannot be read fail alone, at once, with the reason.
    assert not by_path[broken].ok and by_path[broken].error
    assert "no such file" in (by_path[missing].error or "")
    assert [r.path for r in results[2:]] == [short, long]  # two instances: the short one ends first
    jfk = by_path[short]
    assert jfk.ok and jfk.error is None and jfk.language == "en"
    assert word_error_rate(JFK, jfk.text) == 0.0
    assert abs(jfk.duration_s - 11.0) < 0.2
    starts = [s.start for s in jfk.segments]
    assert starts == sorted(starts) and all(s.start <= s.end for s in jfk.segments)
    assert {"wait_s", "load_s", "transcribe_s"} <= set(jfk.timings)
    assert by_path[long].text.startswith(REFS["multilingual.mp3"]["text_prefix"][:40])
    # Outputs are optional: none were asked for, none were written.
    assert jfk.outputs == {} and sorted(p.name for p in (tmp_path / "in").iterdir()) == sorted(
        ["multilingual.mp3", "jfk.flac", "broken.wav"]
    )
    assert our_workers() == []


def test_outputs_when_asked_for_and_folders_searched(tmp_path: Path) -> None:
    copy("jfk.flac", tmp_path / "in" / "a")
    copy("hotwords.mp3", tmp_path / "in" / "b")
    out = tmp_path / "out"
    results = list(
        vramscribe.transcribe(
            tmp_path / "in",
            model="tiny.en",
            device="cpu",
            formats=["txt", "json"],
            out_dir=out,
            language="en",
            word_timestamps=True,
        )
    )
    assert all(r.ok for r in results) and len(results) == 2
    jfk = next(r for r in results if r.path.name == "jfk.flac")
    assert jfk.outputs == {"txt": out / "a" / "jfk.txt", "json": out / "a" / "jfk.json"}
    assert word_error_rate(JFK, (out / "a" / "jfk.txt").read_text()) == 0.0
    assert any(s.words for s in jfk.segments)
    assert (out / "b" / "hotwords.json").is_file()


def test_bad_model_or_option_raises_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="beam size"):
        vramscribe.transcribe([SPEECH_AUDIO / "jfk.flac"], device="cpu", beam_size=99)
    with pytest.raises(InvalidRequest, match="unknown option"):
        vramscribe.transcribe([SPEECH_AUDIO / "jfk.flac"], device="cpu", colour="blue")
    with pytest.raises(UnknownModel):
        vramscribe.transcribe([SPEECH_AUDIO / "jfk.flac"], model="huge-v9", engine="fake")
    assert our_workers() == []


def test_closing_the_iterator_early_cancels_what_has_not_started(tmp_path: Path) -> None:
    files = [copy("jfk.flac", tmp_path / "in", f"take{n}.flac") for n in range(5)]
    out = tmp_path / "out"
    with vramscribe.transcribe(
        files, model="tiny.en", device="cpu", max_instances=1, formats=["txt"], out_dir=out
    ) as results:
        first = next(results)
    assert first.ok and word_error_rate(JFK, first.text) == 0.0
    written = sorted(p.stem for p in out.glob("*.txt"))
    # One instance: the first file, perhaps the one it had moved on to; never the rest.
    assert first.path.stem in written and len(written) <= 2
    assert our_workers() == []
    with pytest.raises(StopIteration):
        next(results)


def test_scheduler_takes_work_over_time_with_events_cancel_and_wait(tmp_path: Path) -> None:
    jfk = copy("jfk.flac", tmp_path)
    hot = copy("hotwords.mp3", tmp_path)
    with vramscribe.Scheduler(model="tiny.en", device="cpu", max_instances=1) as scheduler:
        first = scheduler.submit(jfk, priority="high")
        second = scheduler.submit(hot, language="en")
        scheduler.cancel(second)  # still waiting behind the first: it never starts
        [done] = scheduler.wait([first], timeout=300)
        assert done.ok and word_error_rate(JFK, done.text) == 0.0
        third = scheduler.submit(hot, language="en", hotwords="ComfyUI")  # later work
        events = list(scheduler.events())
        results = {r.job_id: r for r in scheduler.results()}
    assert set(results) == {first, second, third}
    assert results[second].state == "cancelled" and results[second].segments == ()
    assert "ComfyUI" in results[third].text
    states = [e.state for e in events if e.job_id == first and e.type == "job"]
    assert states[0] == "pending" and states[-1] == "completed" and "processing" in states
    segments = [e.data["segment"]["text"] for e in events if e.type == "segment"]
    assert any("fellow Americans" in text for text in segments)
    assert our_workers() == []


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    refs = json.loads((EXAMPLES / "references.json").read_text())
    lines = [line for line in out.stdout.splitlines() if not line.startswith(" ")]
    assert sorted(line.split(":")[0] for line in lines) == sorted(refs)
    for line in lines:
        name, _, rest = line.partition(": [en] ")
        assert word_error_rate(refs[name], rest) <= 0.2, line
    assert re.search(r"^\s+\d+\.\d\d\s+\d+\.\d\d \S", out.stdout, re.M)
