"""Charts of a run as PNG files: what each instance did over time, and two histograms.

Figures are built with the object API on the Agg backend, never through
pyplot's global state, so charts can be drawn from any thread and a headless
machine needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vramscribe.report.load import Run

DPI = 100
TIMELINE_SIZE = (14.0, 8.0)
"""Inches at ``DPI`` for one device; each further device adds ``PER_DEVICE_IN`` of height."""
PER_DEVICE_IN = 4.5
HISTOGRAM_SIZE = (10.0, 5.0)
COLOURS = {
    "loading": "#f0a030",
    "processing": "#3070c0",
    "releasing": "#b0b0b0",
    "failed": "#d03030",
    "others": "#909090",
    "ours": "#2a8f80",
    "reserved": "#a8dcd2",
    "free": "#f2f2ee",
}


def write_charts(run: Run, out_dir: Path) -> list[Path]:
    """Write ``timeline.png``, ``load_times.png`` and ``waits.png``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "timeline.png", out_dir / "load_times.png", out_dir / "waits.png"]
    timeline_figure(run).savefig(paths[0], dpi=DPI)
    loads = {
        model: [ld.load_s for j in run.jobs.values() if j.model == model for ld in j.loads]
        for model in sorted({j.model for j in run.jobs.values()})
    }
    histogram(loads, "model load time (worker start excluded)", "seconds").savefig(
        paths[1], dpi=DPI
    )
    waits = {
        model: [w for j in run.jobs.values() if j.model == model and (w := j.wait_s) is not None]
        for model in loads
    }
    histogram(waits, "queue wait (submission to first start)", "seconds").savefig(paths[2], dpi=DPI)
    return paths


def timeline_figure(run: Run) -> Figure:
    devices = run.device_ids() or ["(no device)"]
    width, height = TIMELINE_SIZE
    fig = Figure(figsize=(width, max(height, 3.5 + PER_DEVICE_IN * len(devices))), dpi=DPI)
    axes = fig.subplots(
        2 * len(devices), 1, sharex=True, squeeze=False, height_ratios=[3, 2] * len(devices)
    )
    for n, dev in enumerate(devices):
        _lanes(axes[2 * n][0], run, dev)
        _memory(axes[2 * n + 1][0], run, dev)
    bottom = axes[-1][0]
    bottom.set_xlabel("seconds since the run started")
    bottom.set_xlim(0, max(run.wall_s, 1e-3))
    fig.legend(
        handles=[
            Patch(color=COLOURS[k], label=label)
            for k, label in [
                ("loading", "loading"),
                ("processing", "transcribing"),
                ("releasing", "exited, memory not yet back"),
                ("failed", "failed attempt"),
                ("others", "other processes"),
                ("ours", "our instances"),
                ("reserved", "reserved, not yet in use"),
                ("free", "free"),
            ]
        ],
        loc="upper center",
        ncol=8,
        frameon=False,
        fontsize="small",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _lanes(ax: Axes, run: Run, device: str) -> None:
    mine = [a for a in run.attempts if a.device == device]
    lanes = max((a.lane for a in mine), default=-1) + 1
    for a in mine:
        ready = a.ready if a.ready is not None else a.end
        edge = COLOURS["failed"] if a.failure is not None else "none"
        spans = [(a.start, ready, "loading")]
        if a.ready is not None:
            spans.append((a.ready, a.end, "processing"))
        if a.release_until is not None and a.release_until > a.end:
            spans.append((a.end, a.release_until, "releasing"))
        for start, end, what in spans:
            ax.barh(
                a.lane,
                end - start,
                left=start - run.t0,
                height=0.7,
                color=COLOURS[what],
                edgecolor=edge,
                linewidth=1.5 if a.failure is not None else 0,
            )
        if a.failure is not None:
            ax.plot(a.end - run.t0, a.lane, "x", color=COLOURS["failed"], markersize=9)
    ax.set_title(f"{device}: instances (one lane each)", loc="left", fontsize="medium")
    ax.set_ylim(lanes - 0.5 if lanes else 0.5, -0.5)
    ax.set_yticks(range(lanes), [f"lane {k + 1}" for k in range(lanes)])
    if not mine:
        ax.text(0.5, 0.5, "no instances ran here", transform=ax.transAxes, ha="center")
    ax.grid(axis="x", alpha=0.3)


def _memory(ax: Axes, run: Run, device: str) -> None:
    samples = run.samples.get(device, [])
    ax.set_ylabel("MB")
    ax.set_title(f"{device}: memory", loc="left", fontsize="medium")
    if not samples:
        ax.text(0.5, 0.5, "no device readings", transform=ax.transAxes, ha="center")
        return
    # Readings come once a second: hold the last one until the run's end.
    held = [*samples, samples[-1]]
    xs = [s.t - run.t0 for s in samples] + [max(run.wall_s, samples[-1].t - run.t0)]
    layers = {
        "others": [s.others_mb for s in held],
        "ours": [s.ours_mb for s in held],
        "reserved": [s.reserved_mb for s in held],
        "free": [s.free_shown_mb for s in held],
    }
    ax.stackplot(
        xs,
        *layers.values(),
        colors=[COLOURS[k] for k in layers],
        step="post",
    )
    ax.set_ylim(0, max(s.total_mb for s in samples) or 1.0)
    ax.grid(axis="x", alpha=0.3)


def histogram(series: dict[str, list[float]], title: str, unit: str) -> Figure:
    fig = Figure(figsize=HISTOGRAM_SIZE, dpi=DPI)
    ax = fig.subplots()
    present = {k: v for k, v in series.items() if v}
    if present:
        values: Sequence[Sequence[float]] = list(present.values())
        ax.hist(
            values,
            bins=_bins(values),
            stacked=True,
            label=list(present),
            edgecolor="white",
            linewidth=1,
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="model")
    else:
        ax.text(0.5, 0.5, "nothing to show", transform=ax.transAxes, ha="center")
    ax.set_title(title)
    ax.set_xlabel(unit)
    ax.set_ylabel("count")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _bins(values: Sequence[Sequence[float]]) -> int:
    n = sum(len(v) for v in values)
    return max(5, min(40, n // 2))
