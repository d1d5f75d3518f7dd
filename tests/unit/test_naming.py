"""One naming rule: inputs never share an output, existing outputs keep their names,
and only an output recorded for the same input as it is now counts as done."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import write_wav
from vramscribe.naming import InputStamp, claim, is_done, name_outputs, path_key, stamp
from vramscribe.settings import RunSettings
from vramscribe.store.store import Store
from vramscribe.submit.request import JobRequest
from vramscribe.submit.run import open_run


def inputs(folder: Path, *names: str) -> list[tuple[Path, Path]]:
    return [(write_wav(folder / name, 0.5), folder) for name in names]


def names(outputs: tuple[tuple[str, Path], ...]) -> list[str]:
    return [p.name for _, p in outputs]


def recorded(input_file: Path, *outputs: Path) -> dict[str, InputStamp]:
    now = stamp(input_file)
    assert now is not None
    return {path_key(p): now for p in outputs}


def test_inputs_with_the_same_stem_keep_their_extension_and_others_keep_plain_names(
    tmp_path: Path,
) -> None:
    files = inputs(tmp_path, "talk.flac", "talk.mp3", "intro.wav")
    naming = name_outputs(files, ("txt", "srt"), None, {})
    by_name = {f.name: names(outs) for f, outs in naming.outputs.items()}
    assert by_name == {
        "talk.flac": ["talk.flac.txt", "talk.flac.srt"],
        "talk.mp3": ["talk.mp3.txt", "talk.mp3.srt"],
        "intro.wav": ["intro.txt", "intro.srt"],
    }
    assert [p.name for p in naming.renamed] == ["talk.flac", "talk.mp3"]
    message = naming.message()
    assert message is not None and message.startswith("2 input(s) share a name")
    assert name_outputs(files[2:], ("txt",), None, {}).message() is None


def test_an_existing_output_keeps_its_name_when_its_record_names_the_same_input(
    tmp_path: Path,
) -> None:
    (flac, root), (mp3, _) = inputs(tmp_path, "talk.flac", "talk.mp3")
    records = recorded(flac, tmp_path / "talk.txt")
    naming = name_outputs([(flac, root), (mp3, root)], ("txt",), None, records)
    assert names(naming.outputs[flac]) == ["talk.txt"]
    assert names(naming.outputs[mp3]) == ["talk.mp3.txt"]


def test_an_output_of_another_existing_input_is_never_reused(tmp_path: Path) -> None:
    (flac, root), (mp3, _) = inputs(tmp_path, "talk.flac", "talk.mp3")
    records = recorded(flac, tmp_path / "talk.txt")
    # talk.mp3 alone: talk.txt belongs to talk.flac, which still exists.
    assert names(name_outputs([(mp3, root)], ("txt",), None, records).outputs[mp3]) == [
        "talk.mp3.txt"
    ]
    flac.unlink()  # its input is gone: the name is free again
    assert names(name_outputs([(mp3, root)], ("txt",), None, records).outputs[mp3]) == ["talk.txt"]


def test_done_means_recorded_for_this_input_as_it_is_now(tmp_path: Path) -> None:
    (audio, _), (other, _) = inputs(tmp_path, "a.wav", "b.wav")
    out = ((("txt", tmp_path / "a.txt")),)
    assert not is_done(audio, out, recorded(audio, tmp_path / "a.txt"))  # no file yet
    (tmp_path / "a.txt").write_text("x\n")
    assert not is_done(audio, out, {})  # a file nobody recorded
    assert not is_done(audio, out, recorded(other, tmp_path / "a.txt"))  # another input's
    records = recorded(audio, tmp_path / "a.txt")
    assert is_done(audio, out, records)
    later = audio.stat().st_mtime + 5
    os.utime(audio, (later, later))  # a newer version of the input
    assert not is_done(audio, out, records)


def test_claim_renames_outputs_another_unfinished_job_writes(tmp_path: Path) -> None:
    (flac, _), (mp3, _) = inputs(tmp_path, "talk.flac", "talk.mp3")
    out = (("txt", tmp_path / "talk.txt"),)
    assert claim(flac, out, {}, {}) == out
    taken = {path_key(tmp_path / "talk.txt"): path_key(flac)}
    assert claim(flac, out, {}, taken) == out  # its own claim
    assert names(claim(mp3, out, {}, taken)) == ["talk.mp3.txt"]


def test_run_submit_follows_the_rule_and_the_ledger_records_outputs(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    run = open_run(store, RunSettings(device="cpu"), tmp_path)
    (flac, _), (mp3, _) = inputs(tmp_path / "in", "talk.flac", "talk.mp3")
    out = (("txt", tmp_path / "out" / "talk.txt"),)
    try:
        first = run.submit(JobRequest(input=flac, outputs=out, model="small", engine="fake"))
        second = run.submit(JobRequest(input=mp3, outputs=out, model="small", engine="fake"))
        assert [Path(p).name for _, p in first.outputs] == ["talk.txt"]
        assert [Path(p).name for _, p in second.outputs] == ["talk.mp3.txt"]
        run.runner.run()
        sources = store.ledger.sources(
            [tmp_path / "out" / "talk.txt", tmp_path / "out" / "talk.mp3.txt"]
        )
        assert sources == {
            path_key(tmp_path / "out" / "talk.txt"): stamp(flac),
            path_key(tmp_path / "out" / "talk.mp3.txt"): stamp(mp3),
        }
    finally:
        run.close()


def test_a_path_key_is_the_resolved_path_through_linked_folders_and_linked_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "talk.txt").write_text("x")
    (tmp_path / "via").symlink_to(real)
    (real / "link.txt").symlink_to(real / "talk.txt")
    resolved = str(real.resolve())
    assert path_key(tmp_path / "via" / "talk.txt") == f"{resolved}/talk.txt"
    assert path_key(tmp_path / "via" / "new.txt") == f"{resolved}/new.txt"  # not written yet
    assert path_key(tmp_path / "via" / "link.txt") == f"{resolved}/talk.txt"
    assert path_key(tmp_path / "via" / "sub" / "..") == resolved
    monkeypatch.chdir(tmp_path / "via")
    assert path_key("talk.txt") == path_key(real / "talk.txt")
