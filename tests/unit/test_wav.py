"""WAV lengths from the RIFF header agree with a decoder's, and other files go to the decoder."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import EXAMPLES
from vramscribe.audio import _probe_decoding, probe_duration
from vramscribe.errors import BadInput
from vramscribe.wav import pcm_length, riff_declared_seconds


def _pcm(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.zeros(int(seconds * rate) * channels, np.int16).tobytes())
    return path


def _extensible(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A WAVE_FORMAT_EXTENSIBLE file whose sub-format is PCM (as many recorders write)."""
    data = np.zeros(int(seconds * rate), np.int16).tobytes()
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, rate, rate * 2, 2, 16, 22, 16, 4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.wav")))
def test_header_length_is_the_decoders_length(name: str) -> None:
    wav = pcm_length(EXAMPLES / name)
    assert wav is not None
    assert wav.declared_s == wav.present_s
    declared, real = _probe_decoding(EXAMPLES / name)
    assert wav.declared_s == pytest.approx(declared, abs=0.01)
    assert wav.present_s == pytest.approx(real, abs=0.01)


def test_stereo_and_odd_rates_are_read_from_the_header(tmp_path: Path) -> None:
    path = _pcm(tmp_path / "stereo.wav", 2.5, rate=44100, channels=2)
    assert pcm_length(path) is not None
    assert probe_duration(path) == pytest.approx(2.5, abs=1e-3)
    assert probe_duration(path) == pytest.approx(_probe_decoding(path)[1], abs=0.01)


def test_extensible_pcm_is_read_from_the_header(tmp_path: Path) -> None:
    path = _extensible(tmp_path / "ext.wav", 3.0)
    wav = pcm_length(path)
    assert wav is not None and wav.present_s == pytest.approx(3.0)
    assert probe_duration(path) == pytest.approx(_probe_decoding(path)[1], abs=0.01)


def test_a_wav_cut_short_holds_less_than_it_declares(tmp_path: Path) -> None:
    full = _pcm(tmp_path / "full.wav", 10.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 3 * 32000 + 1])  # 3 s and half a sample
    wav = pcm_length(cut)
    assert wav is not None
    assert (wav.declared_s, wav.present_s) == (pytest.approx(10.0), pytest.approx(3.0))
    with pytest.raises(BadInput, match=r"truncated: the header says 10\.0 s but the audio stops"):
        probe_duration(cut)


def test_other_codecs_and_unknown_sizes_go_to_the_decoder(tmp_path: Path) -> None:
    mulaw = tmp_path / "mulaw.wav"
    with av.open(str(mulaw), "w", format="wav") as out:
        stream = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), "s16", "mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert pcm_length(mulaw) is None
    assert riff_declared_seconds(mulaw) == pytest.approx(2.0)
    assert probe_duration(mulaw) == pytest.approx(2.0, abs=0.01)

    streamed = tmp_path / "streamed.wav"
    raw = bytearray(_pcm(tmp_path / "s.wav", 2.0).read_bytes())
    raw[40:44] = struct.pack("<I", 0xFFFFFFFF)  # a streaming writer's "size unknown"
    streamed.write_bytes(bytes(raw))
    assert pcm_length(streamed) is None and riff_declared_seconds(streamed) is None
    assert probe_duration(streamed) == pytest.approx(2.0, abs=0.01)

    assert pcm_length(EXAMPLES.parent / "README.md") is None
