"""``vramscribe report``: what happened in a run, where the time went, and what to change.

Reads a run folder's ``timeline.jsonl`` (see :mod:`vramscribe.runtime.timeline`),
prints tables and findings, and on request writes charts, a self-contained
HTML page and a Chrome trace.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from vramscribe.errors import VramscribeError
from vramscribe.report.analysis import Report, analyse
from vramscribe.report.charts import write_charts
from vramscribe.report.load import Run, find_run, load_run
from vramscribe.report.render import render_terminal, to_html
from vramscribe.report.trace import chrome_trace

__all__ = [
    "Report",
    "Run",
    "analyse",
    "chrome_trace",
    "find_run",
    "load_run",
    "render_terminal",
    "report_command",
    "to_html",
    "write_charts",
]


def report_command(
    run: str | None,
    html: Path | None,
    png: Path | None,
    chrome_trace: Path | None,
    console: Console,
) -> int:
    """Report on ``run`` (latest if None); 0 on success, 2 with a message if it cannot."""
    try:
        loaded = load_run(find_run(run))
        report = analyse(loaded)
        render_terminal(report, console)
        _write_outputs(loaded, report, html, png, chrome_trace, console)
    except VramscribeError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        console.print(f"[red]error:[/red] cannot write{escape(where)}: {exc.strerror or exc}")
        return 2
    return 0


def _write_outputs(
    run: Run,
    report: Report,
    html: Path | None,
    png: Path | None,
    trace: Path | None,
    console: Console,
) -> None:
    charts = write_charts(run, png) if png is not None else []
    for path in charts:
        console.print(f"wrote {escape(str(path))}")
    if html is not None:
        if charts:
            page = to_html(report, charts)
        else:
            with tempfile.TemporaryDirectory(prefix="vramscribe-report-") as tmp:
                page = to_html(report, write_charts(run, Path(tmp)))
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page, encoding="utf-8")
        console.print(f"wrote {escape(str(html))}")
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(json.dumps(chrome_trace(run), separators=(",", ":")), encoding="utf-8")
        console.print(f"wrote {escape(str(trace))}")
