"""The faster-whisper engine (CTranslate2), on the CPU or a CUDA GPU."""

from __future__ import annotations

import math
import os
from typing import Any

from vramscribe.audio import SAMPLE_RATE
from vramscribe.core.footprints import resolve_compute_type
from vramscribe.decoding import engine_kwargs
from vramscribe.engines.base import EngineOptions, ProgressFn, SegmentFn
from vramscribe.errors import EngineError
from vramscribe.transcript import Segment, Transcript, Word


def process_memory_mb(options: EngineOptions) -> float:
    """Memory this process holds on its device: GPU memory via NVML, else RSS."""
    pid = os.getpid()
    if options.device == "cuda":
        try:
            from vramscribe.devices.nvml import process_gpu_memory

            return float(sum(process_gpu_memory(pid).values()))
        except Exception:
            return 0.0
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


WINDOW_S = 30.0


def batch_windows(audio: Any, vad_filter: bool) -> list[dict[str, float]] | None:
    """Windows for the batched pipeline: with VAD none (it finds speech itself); without,
    fixed 30 s windows, since it batches windows and refuses a file over 30 s that has
    neither."""
    if vad_filter:
        return None
    duration = len(audio) / SAMPLE_RATE
    starts = [k * WINDOW_S for k in range(max(1, math.ceil(duration / WINDOW_S)))]
    return [{"start": s, "end": min(duration, s + WINDOW_S)} for s in starts]


class WhisperEngine:
    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self._model: Any = None
        self._pipeline: Any = None

    def load(self) -> float:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        o = self.options
        # "default" means what the help and the memory estimates say (int8 on the CPU,
        # float16 on a GPU), not CTranslate2's "keep the weights' type" (float32 on a CPU
        # for float16 weights: twice the work).
        compute = resolve_compute_type(o.compute_type, "cpu" if o.device == "cpu" else "cuda")
        try:
            self._model = WhisperModel(
                o.model_path,
                device=o.device,
                device_index=o.device_index,
                compute_type=compute,
                cpu_threads=o.cpu_threads,
                local_files_only=os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True"),
            )
        except Exception as exc:
            raise EngineError(f"cannot load model {o.model!r}: {exc}") from exc
        self._pipeline = BatchedInferencePipeline(self._model)
        return process_memory_mb(o)

    def transcribe(
        self,
        audio: Any,
        job: EngineOptions,
        attempt: int,
        on_progress: ProgressFn,
        on_segment: SegmentFn,
    ) -> Transcript:
        o = job
        kwargs: dict[str, Any] = {
            "language": o.language,
            "beam_size": o.beam_size,
            "vad_filter": o.vad_filter,
            "word_timestamps": o.word_timestamps,
            "initial_prompt": o.initial_prompt,
            "hotwords": o.hotwords,
            **engine_kwargs(o.decoding),
        }
        if o.batch_size > 1:
            windows = batch_windows(audio, o.vad_filter)
            segments_iter, info = self._pipeline.transcribe(
                audio, batch_size=o.batch_size, clip_timestamps=windows, **kwargs
            )
        else:
            segments_iter, info = self._model.transcribe(audio, **kwargs)
        segments: list[Segment] = []
        for s in segments_iter:
            words = None
            if o.word_timestamps and s.words is not None:
                words = tuple(Word(w.start, w.end, w.word, w.probability) for w in s.words)
            seg = Segment(float(s.start), float(s.end), s.text, words)
            segments.append(seg)
            on_segment(seg)
            on_progress(float(s.end))
        on_progress(float(info.duration))
        return Transcript(
            segments=tuple(segments),
            language=str(info.language),
            duration_s=float(info.duration),
            model=job.model,
            timings={},
        )
