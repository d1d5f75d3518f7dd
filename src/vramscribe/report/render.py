"""Show a report: rich tables in the terminal, or one self-contained HTML page.

Both renderings draw from the same table rows, so the terminal and the page
never disagree. The page inlines its CSS and its charts (base64 PNG), so it
can be mailed or archived as one file and opened without a network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vramscribe.report.analysis import Report, fmt_s

DASH = "-"


@dataclass(frozen=True, slots=True)
class Rows:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def _s(value: float | None) -> str:
    return DASH if value is None else fmt_s(value)


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.0%}"


def _x(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}x"


def _pair(a: float | None, b: float | None) -> str:
    return DASH if a is None or b is None else f"{fmt_s(a)} / {fmt_s(b)}"


def headline(report: Report) -> str:
    parts = [
        f"{report.completed}/{report.jobs} jobs completed",
        f"{fmt_s(report.audio_s)} of audio in {fmt_s(report.wall_s)}",
        f"speed {_x(report.speed_x)} real time",
    ]
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.cancelled:
        parts.append(f"{report.cancelled} cancelled")
    if report.unfinished:
        parts.append(f"{report.unfinished} unfinished")
    if not report.ended:
        parts.append("the run had not ended when this was read")
    return "; ".join(parts)


def tables(report: Report) -> list[Rows]:
    """The report's tables, as text cells."""
    out = [_models(report), _devices(report)]
    if report.reasons:
        out.append(_reasons(report))
    out.append(_failures(report))
    return [t for t in out if t.rows or t.title != "models"]


def _models(report: Report) -> Rows:
    headers = ("model", "jobs", "done", "audio", "wait p50 / p95", "load p50 / p95",
               "start to ready p50", "speed", "peak MB")  # fmt: skip
    rows = tuple(
        (
            m.model,
            str(m.jobs),
            str(m.completed),
            fmt_s(m.audio_s),
            _pair(m.wait_p50, m.wait_p95),
            _pair(m.load_p50, m.load_p95),
            _s(m.ready_p50),
            _x(m.speed_x),
            DASH if m.peak_mb is None else f"{m.peak_mb:.0f}",
        )
        for m in report.models
    )
    return Rows("models", headers, rows)


def _devices(report: Report) -> Rows:
    headers = ("device", "memory used", "ours", "instances mean / max", "loading",
               "transcribing", "held back", "idle", "loads (reloads)", "OOMs")  # fmt: skip
    rows = tuple(
        (
            d.id,
            _pct(d.memory_used),
            _pct(d.memory_ours),
            f"{d.mean_instances:.2f} / {d.max_instances}",
            _pct(d.time.share("loading")),
            _pct(d.time.share("transcribing")),
            _pct(d.time.share("held_back")),
            _pct(d.time.share("idle")),
            f"{d.loads} ({d.reloads})",
            str(d.ooms),
        )
        for d in report.devices
    )
    return Rows("devices", headers, rows)


def _reasons(report: Report) -> Rows:
    return Rows(
        "why jobs waited",
        ("reason", "jobs", "changes", "job-seconds"),
        tuple((r.reason, str(r.jobs), str(r.events), fmt_s(r.seconds)) for r in report.reasons),
    )


def _failures(report: Report) -> Rows:
    failures = ", ".join(f"{k} {n}" for k, n in report.failures.items()) or "none"
    row = (
        failures,
        str(report.ooms),
        str(report.retries),
        _pair(report.release_p50, report.release_max),
        f"{report.loads} / {report.warm_starts}",
    )
    headers = ("failures", "OOMs", "retries", "release p50 / max", "loads / avoided")
    return Rows("failures and releases", headers, (row,))


NO_FINDINGS = "no findings: nothing in this run crossed a threshold worth acting on"


def render_terminal(report: Report, console: Console) -> None:
    console.print(f"[bold]run {escape(report.name)}[/bold]: {escape(headline(report))}")
    for spec in tables(report):
        table = Table(title=spec.title, title_justify="left")
        for n, header in enumerate(spec.headers):
            table.add_column(header, justify="left" if n == 0 else "right")
        for row in spec.rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    console.print("[bold]findings[/bold]")
    if not report.findings:
        console.print(f"  {NO_FINDINGS}")
    for finding in report.findings:
        console.print(f"  - {finding}", markup=False, highlight=False)


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1440px;
       color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
h2 { font-size: 1.1em; margin-top: 1.6em; }
p.head { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f5; }
ul.findings li { margin: .3em 0; }
img { max-width: 100%; display: block; margin: .8em 0; border: 1px solid #eee; }
"""


def to_html(report: Report, charts: Sequence[Path]) -> str:
    """One self-contained page: inline CSS, charts as data URIs, no external resources."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>vramscribe run {e(report.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>vramscribe run {e(report.name)}</h1>",
        f'<p class="head">{e(headline(report))}</p>',
        "<h2>findings</h2>",
    ]
    if report.findings:
        out.append('<ul class="findings">')
        out += [f"<li>{e(f)}</li>" for f in report.findings]
        out.append("</ul>")
    else:
        out.append(f"<p>{e(NO_FINDINGS)}</p>")
    for spec in tables(report):
        out.append(f"<h2>{e(spec.title)}</h2><table><tr>")
        out += [f"<th>{e(h)}</th>" for h in spec.headers]
        out.append("</tr>")
        for row in spec.rows:
            out.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
    if charts:
        out.append("<h2>charts</h2>")
    for chart in charts:
        data = base64.b64encode(chart.read_bytes()).decode("ascii")
        out.append(f'<img alt="{e(chart.stem)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
