"""A fake engine with the real engine's protocol, for machines without a GPU.

It claims memory on a shared fake device (so the parent sees it in readings,
with lag), takes time in proportion to the audio's length, reports progress
and segments, and can be told to fail to load, run out of memory, crash or
hang, on chosen attempts only, so retries can be tested end to end.

Options (``EngineOptions.fake``): ``device_path`` (the shared fake device
file), ``memory_mb``, ``load_s``, ``speed_x``, ``grow_mb`` (extra memory claimed
halfway through), ``fail`` (``load_error``/``oom`` at load, ``oom_midway``,
``crash``/``hang`` halfway through the file), ``fail_attempts`` (attempt numbers
that fail; default: all) and ``fail_channels`` (channels, 0-based, whose jobs
fail; default: all).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from vramscribe.audio import SAMPLE_RATE
from vramscribe.engines.base import EngineOptions, ProgressFn, SegmentFn
from vramscribe.errors import DeviceOutOfMemory, EngineError
from vramscribe.transcript import Segment, Transcript


class FakeEngine:
    def __init__(self, options: EngineOptions, attempt: int = 1) -> None:
        self.options = options
        self.cfg: dict[str, Any] = dict(options.fake)
        self.attempt = attempt
        self.device: Any = None

    def _fails(self, what: str, cfg: dict[str, Any] | None = None, attempt: int = 0) -> bool:
        cfg = self.cfg if cfg is None else cfg
        if cfg.get("fail") != what:
            return False
        channels = cfg.get("fail_channels")
        if channels is not None and self.options.channel not in channels:
            return False
        attempts = cfg.get("fail_attempts")
        return attempts is None or (attempt or self.attempt) in attempts

    def load(self) -> float:
        from vramscribe.devices.shared_fake import SharedFakeDevice

        time.sleep(float(self.cfg.get("load_s", 0.1)))
        if self._fails("load_error"):
            raise EngineError(f"cannot load model {self.options.model!r}: fake load failure")
        memory = float(self.cfg.get("memory_mb", 1000.0))
        if self._fails("oom"):
            memory = 1e12
        path = self.cfg.get("device_path")
        if path:
            self.device = SharedFakeDevice(Path(path))
            self.device.allocate(os.getpid(), memory)  # raises DeviceOutOfMemory
        return memory

    def transcribe(
        self,
        audio: Any,
        job: EngineOptions,
        attempt: int,
        on_progress: ProgressFn,
        on_segment: SegmentFn,
        start_s: float = 0.0,
    ) -> Transcript:
        """Segments of about 2 s; a resume skips those that end by ``start_s``."""
        cfg = dict(job.fake)
        duration = len(audio) / SAMPLE_RATE
        speed = float(cfg.get("speed_x", 20.0))
        steps = max(1, int(duration // 2))
        segments: list[Segment] = []
        for k in range(steps):
            start, end = duration * k / steps, duration * (k + 1) / steps
            if end <= start_s + 1e-6:
                continue
            if k == steps // 2:
                if self._fails("crash", cfg, attempt):
                    os._exit(70)
                if self._fails("oom_midway", cfg, attempt):
                    raise DeviceOutOfMemory(f"fake: out of memory at {start:.1f} s")
                if self._fails("hang", cfg, attempt):
                    while True:
                        time.sleep(3600)
                grow = float(cfg.get("grow_mb", 0.0))
                if grow and self.device is not None:
                    self.device.allocate(os.getpid(), grow)  # raises DeviceOutOfMemory
            time.sleep((end - start) / speed)
            seg = Segment(start, end, f"fake segment {k + 1}")
            segments.append(seg)
            on_segment(seg, "en")
            on_progress(end)
        return Transcript(tuple(segments), "en", duration, job.model, {})
