"""``vramscribe.transcribe``: many files at once, their results as each one ends."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from vramscribe.api.result import Result
from vramscribe.api.scheduler import Scheduler
from vramscribe.audio import discover


def transcribe(
    paths: str | Path | Iterable[str | Path],
    model: str = "tiny.en",
    device: str = "auto",
    **options: Any,
) -> Transcription:
    """Transcribe files and folders (searched recursively); results in the order they end.

    ::

        for result in vramscribe.transcribe(["talk.mp3", "calls/"], model="tiny.en"):
            print(result.path, result.language, result.text if result.ok else result.error)

    Every file is queued at once and run as a ``vramscribe transcribe`` batch
    runs it: as many model instances as the devices' free memory allows. A
    file that cannot be transcribed yields a result whose ``error`` says why;
    an unknown model or a bad option raises here, before any work. ``options``
    are :class:`Scheduler`'s (``formats`` and ``out_dir`` write files too;
    ``language``, ``priority``, ``beam_size``, ...). Stopping early (``close()``,
    or ``break`` inside ``with``) cancels the files that have not started; the
    running ones finish. An iterator dropped unfinished stops them all.
    """
    return Transcription(Scheduler(model, device, **options), _inputs(paths))


class Transcription(Iterator[Result]):
    """The results of :func:`transcribe`, one per file, in completion order."""

    def __init__(self, scheduler: Scheduler, inputs: list[tuple[Path, Path]]) -> None:
        self._scheduler = scheduler
        try:
            self.job_ids = [scheduler.submit(file, root=root) for file, root in inputs]
        except BaseException:
            scheduler.close(cancel=True)
            raise
        self._results = scheduler.results()
        self._open = True

    def __next__(self) -> Result:
        if not self._open:
            raise StopIteration
        try:
            return next(self._results)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            self._end(cancel=True)
            raise

    def close(self) -> None:
        """Cancel the files that have not started, let the running ones finish, end the workers."""
        if self._open:
            self._scheduler.cancel_pending()
            self._end(cancel=False)

    def _end(self, cancel: bool) -> None:
        self._open = False
        self._scheduler.close(cancel=cancel)

    def __enter__(self) -> Transcription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or exc_type is GeneratorExit:
            self.close()
        elif self._open:
            self._end(cancel=True)

    def __del__(self) -> None:
        # Dropped unfinished: nothing will read the results, so stop everything now.
        if getattr(self, "_open", False):
            self._end(cancel=True)


def _inputs(paths: str | Path | Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Each file with the folder it was found under; a named file is taken as it is.

    A named path that is not a folder is submitted even if it does not exist,
    so that its result says so instead of the whole call failing.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(discover([path]).files)
        else:
            out.append((path, path.parent))
    return out
