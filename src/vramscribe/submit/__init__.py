"""One way in for new jobs, shared by the CLI and the service.

- ``request.py``: :class:`JobRequest`, what a user asks for, checked once.
- ``build.py``: the model resolved, the engine options, the job, task and record.
- ``run.py``: :func:`open_run` (runner, store, recovery, persister, timeline)
  and :meth:`Run.submit`, which both fronts call for every new job.

Only ``request.py`` is imported here, so the CLI can read option defaults
without loading the runtime and the store.
"""

from vramscribe.submit.request import JobRequest

__all__ = ["JobRequest"]
