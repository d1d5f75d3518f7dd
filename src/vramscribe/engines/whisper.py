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


def batch_windows(
    audio: Any, vad_filter: bool, start_s: float = 0.0
) -> list[dict[str, float]] | None:
    """Windows for the batched pipeline: with VAD none (it finds speech itself); without,
    fixed 30 s windows from ``start_s``, since it batches windows and refuses a file over
    30 s that has neither."""
    if vad_filter:
        return None
    duration = len(audio) / SAMPLE_RATE
    count = max(1, math.ceil((duration - start_s) / WINDOW_S))
    starts = [start_s + k * WINDOW_S for k in range(count)]
    return [{"start": s, "end": min(duration, s + WINDOW_S)} for s in starts]


# Less audio than this left after a resume point: nothing to transcribe (a crash came
# after the last segment but before the result was written).
MIN_REST_S = 0.1


def resume_audio(audio: Any, start_s: float, vad_filter: bool) -> tuple[Any, float]:
    """The samples to hand faster-whisper for a resume at ``start_s``, and the offset to
    add to the timestamps it returns.

    Without VAD the whole file is passed with ``clip_timestamps`` starting at ``start_s``
    (faster-whisper 1.2: the features are those of an uninterrupted run and its
    timestamps are absolute). With VAD that is not possible, because faster-whisper
    ignores ``vad_filter`` once clip timestamps are given (``vad_filter and
    clip_timestamps == "0"`` in ``WhisperModel.transcribe``; the batched pipeline
    likewise skips VAD): the samples are cut at ``start_s`` and the timestamps offset.
    """
    if start_s <= 0 or not vad_filter:
        return audio, 0.0
    return audio[int(start_s * SAMPLE_RATE) :], start_s


def _shift(seg: Any, offset: float, with_words: bool) -> Segment:
    words = None
    if with_words and seg.words is not None:
        words = tuple(
            Word(w.start + offset, w.end + offset, w.word, w.probability) for w in seg.words
        )
    return Segment(float(seg.start) + offset, float(seg.end) + offset, seg.text, words)


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
        start_s: float = 0.0,
    ) -> Transcript:
        o = job
        duration = len(audio) / SAMPLE_RATE
        if start_s > 0 and duration - start_s < MIN_REST_S:
            on_progress(duration)
            return Transcript((), o.language or "", duration, job.model, {})
        samples, offset = resume_audio(audio, start_s, o.vad_filter)
        clip = start_s - offset  # where decoding starts inside ``samples``
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
            windows = batch_windows(samples, o.vad_filter, clip)
            segments_iter, info = self._pipeline.transcribe(
                samples, batch_size=o.batch_size, clip_timestamps=windows, **kwargs
            )
        else:
            if clip > 0:
                kwargs["clip_timestamps"] = [clip]
            segments_iter, info = self._model.transcribe(samples, **kwargs)
        language = str(info.language)
        segments: list[Segment] = []
        for s in segments_iter:
            seg = _shift(s, offset, o.word_timestamps)
            segments.append(seg)
            on_segment(seg, language)
            on_progress(seg.end)
        on_progress(duration)
        return Transcript(
            segments=tuple(segments),
            language=language,
            duration_s=duration,
            model=job.model,
            timings={},
        )
