import json
import os
import shutil
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import EXAMPLES, SPEECH_AUDIO
from vramscribe.audio import AUDIO_EXTENSIONS, decode_check, discover, probe_duration
from vramscribe.errors import BadInput, InputNotFound


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for name in (
        "a.wav",
        "sub/b.MP3",
        "sub/deeper/c.flac",
        "sub/deeper/d.webm",
        ".hidden.wav",
        ".git/e.wav",
        "sub/.cache/f.mp3",
        "notes.txt",
        "sub/.talk.srt.abc.tmp",
        "sub/cover.jpg",
    ):
        _touch(root / name)
    return root


def test_discover_finds_audio_recursively_sorted_skipping_hidden_and_other_files(
    tree: Path,
) -> None:
    found = discover([tree])
    assert found.errors == []
    assert found.files == [
        (tree / "a.wav", tree),
        (tree / "sub" / "b.MP3", tree),
        (tree / "sub" / "deeper" / "c.flac", tree),
        (tree / "sub" / "deeper" / "d.webm", tree),
    ]


def test_discover_takes_explicit_files_whatever_their_extension(tree: Path) -> None:
    found = discover([tree / "notes.txt", str(tree / ".hidden.wav")])
    assert found.errors == []
    assert found.files == [(tree / ".hidden.wav", tree), (tree / "notes.txt", tree)]


def test_discover_deduplicates_a_file_reached_twice(tree: Path) -> None:
    found = discover([tree / "sub" / "b.MP3", tree, tree / "sub" / ".." / "a.wav"])
    files = [f for f, _ in found.files]
    assert len(files) == 4
    assert len({f.resolve() for f in files}) == 4
    # The first way the file was named wins, with the root it was found under.
    assert (tree / "sub" / "b.MP3", tree / "sub") in found.files


def test_discover_reports_missing_paths_and_folders_without_audio(
    tree: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    only_text = tmp_path / "docs"
    _touch(only_text / "readme.md")
    _touch(only_text / ".secret.wav")
    missing = tmp_path / "nope"
    pipe = _fifo(tmp_path / "pipe.wav")
    found = discover([missing, empty, only_text, tree / "a.wav", pipe])
    assert found.files == [(tree / "a.wav", tree)]
    assert found.errors[0] == f"no such file or folder: {missing}"
    for error, folder in zip(found.errors[1:3], (empty, only_text), strict=True):
        assert error.startswith(f"no audio files under {folder} (looked for .wav, .mp3, .flac")
    assert found.errors[3] == f"not a regular file or folder: {pipe}"
    assert len(found.errors) == 4


def test_audio_extensions_cover_common_audio_and_video_containers() -> None:
    for ext in ("wav", "flac", "mp3", "m4a", "aac", "ogg", "opus", "wma", "webm", "mp4"):
        assert f".{ext}" in AUDIO_EXTENSIONS
    for ext in ("mkv", "mov", "avi"):
        assert f".{ext}" in AUDIO_EXTENSIONS


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("jfk.flac", 11.0), ("multilingual.mp3", 59.9), ("hotwords.mp3", 4.0)],
)
def test_probe_duration_of_real_recordings(name: str, seconds: float) -> None:
    assert probe_duration(SPEECH_AUDIO / name) == pytest.approx(seconds, abs=0.05)


def _example_clips() -> list[str]:
    references = json.loads((EXAMPLES / "references.json").read_text(encoding="utf-8"))
    return sorted(references)


@pytest.mark.parametrize("name", _example_clips())
def test_probe_duration_of_example_clips_matches_the_wav_header(name: str) -> None:
    with wave.open(str(EXAMPLES / name)) as clip:
        assert (clip.getframerate(), clip.getnchannels()) == (16000, 1)
        seconds = clip.getnframes() / clip.getframerate()
    assert 3.0 <= seconds <= 8.0
    assert probe_duration(EXAMPLES / name) == pytest.approx(seconds, abs=0.01)
    assert (EXAMPLES / name).stat().st_size < 300_000


def _cut(source: Path, target: Path, size: int) -> Path:
    with source.open("rb") as fh:
        return _touch(target, fh.read(size))


def _video_without_audio(target: Path) -> Path:
    with av.open(str(target), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return target


def _header_only_wav(target: Path) -> Path:
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
    return target


def _fifo(target: Path) -> Path:
    os.mkfifo(target)
    return target


BAD_INPUTS = [
    ("empty", lambda d: _touch(d / "empty.wav", b""), "the file is empty"),
    (
        "text renamed .wav",
        lambda d: _touch(d / "notes.wav", b"Meeting notes\nTODO: transcribe\n"),
        "is a text file, not audio",
    ),
    (
        "random bytes",
        lambda d: _touch(d / "noise.mp3", bytes(range(7, 256)) * 3),
        "not an audio or video file",
    ),
    (
        "mp3 cut to 2 KB",
        lambda d: _cut(SPEECH_AUDIO / "multilingual.mp3", d / "cut.mp3", 2048),
        "truncated: the header says 59.9 s but the audio stops at 0.4 s",
    ),
    (
        "mp3 cut to half",
        lambda d: _cut(SPEECH_AUDIO / "multilingual.mp3", d / "half.mp3", 120_000),
        "truncated: the header says 59.9 s but the audio stops at 29.9 s",
    ),
    (
        "mp3 header only",
        lambda d: _cut(SPEECH_AUDIO / "multilingual.mp3", d / "head.mp3", 200),
        "starts like MP3 but no audio could be read from it",
    ),
    (
        "flac cut short",
        lambda d: _cut(SPEECH_AUDIO / "jfk.flac", d / "cut.flac", 400_000),
        "truncated: the header says 11.0 s",
    ),
    (
        "wav cut short",
        lambda d: _cut(EXAMPLES / "weather.wav", d / "cut.wav", 60_000),
        "truncated: the header says 6.2 s",
    ),
    ("wav with no samples", lambda d: _header_only_wav(d / "silent.wav"), "no audio samples"),
    ("video without sound", lambda d: _video_without_audio(d / "v.mkv"), "has no audio track"),
    ("a folder", lambda d: d, "is a folder"),
    ("a named pipe", lambda d: _fifo(d / "pipe.wav"), "is not a regular file"),
]


@pytest.mark.parametrize(
    ("make", "message"),
    [pytest.param(make, message, id=case) for case, make, message in BAD_INPUTS],
)
def test_probe_duration_rejects_bad_input_with_a_clear_message(
    tmp_path: Path, make: object, message: str
) -> None:
    assert callable(make)
    path = make(tmp_path)
    with pytest.raises(BadInput) as caught:
        probe_duration(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_probe_duration_of_a_missing_file_is_input_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match="no such file"):
        probe_duration(tmp_path / "gone.wav")


def _probe_message_as(uid: int, path: Path) -> str:
    """Probe in a forked child that has given up root, since root can read any file."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        message = "no error"
        try:
            os.setgid(uid)
            os.setuid(uid)
            probe_duration(path)
        except BadInput as err:
            message = f"BadInput: {err}"
        except BaseException as err:
            message = f"{type(err).__name__}: {err}"
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.parametrize(
    "folder_mode",
    [pytest.param(0o755, id="file-unreadable"), pytest.param(0o600, id="folder-unsearchable")],
)
def test_probe_duration_of_an_unreadable_file(open_folder: Path, folder_mode: int) -> None:
    path = _cut(SPEECH_AUDIO / "hotwords.mp3", open_folder / "locked.mp3", 10**6)
    path.chmod(0)
    open_folder.chmod(folder_mode)
    if os.geteuid() == 0:
        message = _probe_message_as(65534, path)
    else:
        with pytest.raises(BadInput) as caught:
            probe_duration(path)
        message = f"BadInput: {caught.value}"
    assert message == f"BadInput: {path}: cannot be read (Permission denied)"


def test_probe_duration_reads_the_real_length_of_a_long_file_quickly(tmp_path: Path) -> None:
    # 20 copies of the same mp3 frames, without the first copy's length header,
    # so the declared length is only a bitrate estimate.
    data = (SPEECH_AUDIO / "multilingual.mp3").read_bytes()
    tag_size = 10 + (data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9])
    long_mp3 = _touch(tmp_path / "long.mp3", data[tag_size:] * 20)
    assert probe_duration(long_mp3) == pytest.approx(20 * 59.95, rel=0.01)


def _encoded_wav(path: Path, codec: str, seconds: int) -> Path:
    """A WAV file of ``seconds`` of tone whose data ``codec`` encodes (PCM or compressed)."""
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream(codec, rate=16000, layout="mono")
        tone = (np.sin(np.arange(16000 * seconds) / 10) * 8000).astype(np.int16)
        for chunk in np.split(tone, seconds * 10):
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = 16000
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("codec", ["pcm_s16le", "pcm_mulaw", "adpcm_ima_wav", "mp3"])
def test_probe_duration_of_wav_files_whatever_their_codec(tmp_path: Path, codec: str) -> None:
    """A WAV's streams are learned from its header alone (FFmpeg reads no further ahead),
    compressed data included; the length still comes from the audio itself."""
    wav = _encoded_wav(tmp_path / f"{codec}.wav", codec, 7)
    assert probe_duration(wav) == pytest.approx(7.0, abs=0.15)
    cut = _touch(tmp_path / f"cut-{codec}.wav", wav.read_bytes()[: wav.stat().st_size // 3])
    with pytest.raises(BadInput, match=r"truncated|no audio"):
        probe_duration(cut)


def test_decode_check_accepts_good_audio_and_rejects_a_truncated_flac(tmp_path: Path) -> None:
    decode_check(SPEECH_AUDIO / "jfk.flac")
    cut = _cut(SPEECH_AUDIO / "jfk.flac", tmp_path / "cut.flac", 400_000)
    with pytest.raises(BadInput, match=r"cannot be decoded after \d+\.\d s"):
        decode_check(cut)
