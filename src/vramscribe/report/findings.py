"""Findings a person can act on, emitted only when a number crosses a named threshold."""

from __future__ import annotations

import dataclasses
from typing import Any

from vramscribe.report.load import Run
from vramscribe.report.reasons import is_warm
from vramscribe.report.stats import Report, fmt_s, percentile

# Thresholds for findings: below these, the report says nothing.
LOADING_SHARE_FINDING = 0.15
"""Share of device time spent only loading models that is worth pointing out."""
RELOAD_WINDOW_S = 10.0
"""A load counts as a reload if the same model left the same device this recently."""
LOAD_VS_WORK_FINDING = 0.5
"""Median start-to-ready time, as a fraction of median transcribing time, worth pointing out."""
MEMORY_WAIT_FINDING_S = 5.0
"""Median time a job waited for memory that is worth pointing out."""
IDLE_WHILE_WAITING_FINDING = 0.10
"""Share of the run a device sat idle while jobs waited for memory elsewhere."""
HELD_BACK_FINDING = 0.10
"""Share of the run a device ran nothing while jobs were pending."""
SLOW_RELEASE_S = 1.0
"""Time for memory to come back after a worker exited that is worth pointing out."""
NEIGHBOUR_SHARE_FINDING = 0.20
"""Mean share of a device's memory held by other processes that is worth pointing out."""
CAP_WAIT_FINDING_S = 30.0
"""Job-seconds spent waiting on the instance cap that are worth pointing out."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def with_findings(report: Report, run: Run) -> Report:
    out: list[str] = []
    margin = report.settings.get("safety_margin")
    out += _failure_findings(report, run, margin)
    out += _loading_findings(report, run)
    out += _waiting_findings(report, run, margin)
    if report.release_max is not None and report.release_max >= SLOW_RELEASE_S:
        assert report.release_p50 is not None
        out.append(
            f"memory took up to {fmt_s(report.release_max)} to come back after a worker exited "
            f"(median {fmt_s(report.release_p50)}); nothing new can use it until then"
        )
    for d in report.devices:
        if d.others_share is not None and d.others_share >= NEIGHBOUR_SHARE_FINDING:
            out.append(
                f"other processes held {d.others_share:.0%} of {d.id}'s memory on average; "
                "vramscribe can only use the rest"
            )
    return dataclasses.replace(report, findings=tuple(out))


def _failure_findings(report: Report, run: Run, margin: Any) -> list[str]:
    out = []
    for d in report.devices:
        if d.ooms:
            text = f"{_plural(d.ooms, 'out-of-memory failure')} on {d.id}"
            if isinstance(margin, int | float):
                text += (
                    f"; a higher --safety-margin (now {margin:.2f}) leaves more room for "
                    "neighbours and for memory that grows during transcription"
                )
            out.append(text)
    if report.retries:
        retried = {j.id for j in run.jobs.values() if len(j.attempts) > 1}
        recovered = sum(1 for j in retried if run.jobs[j].state == "completed")
        kinds = ", ".join(f"{k}: {n}" for k, n in report.failures.items())
        out.append(
            f"{_plural(report.retries, 'failed attempt')} ({kinds}) "
            f"{'was' if report.retries == 1 else 'were'} retried; "
            f"{recovered} of {len(retried)} retried jobs then completed"
        )
    if report.failed:
        out.append(
            f"{_plural(report.failed, 'job')} failed for good; "
            "the worker-*.log files in the run folder hold each attempt's errors"
        )
    return out


def _loading_findings(report: Report, run: Run) -> list[str]:
    out = []
    split = report.time
    share = split.share("loading")
    if share >= LOADING_SHARE_FINDING:
        text = f"{share:.0%} of device time was spent loading models with nothing transcribing"
        if report.reloads:
            text += (
                f"; {report.reloads} of {report.loads} loads were of a model that had just "
                f"been unloaded on the same device (within {RELOAD_WINDOW_S:.0f} s)"
            )
        out.append(text)
    done = [
        a
        for a in run.attempts
        if a.outcome == "completed" and a.ready is not None and not is_warm(a)
    ]
    if report.warm_starts:
        return out
    ready = percentile((a.loading_s for a in done), 50)
    work = percentile((a.processing_s for a in done), 50)
    audio = percentile((run.jobs[a.job].audio_s for a in done), 50)
    if ready is not None and work and audio is not None and ready >= LOAD_VS_WORK_FINDING * work:
        out.append(
            f"a typical job spent {fmt_s(ready)} starting its worker and loading the model "
            f"for {fmt_s(work)} of transcribing ({fmt_s(audio)} of audio); every job loads "
            "the model afresh in its own worker, so short files pay that cost each time"
        )
    return out


def _waiting_findings(report: Report, run: Run, margin: Any) -> list[str]:
    out = []
    wait = report.memory_wait_p50
    if wait is not None and wait >= MEMORY_WAIT_FINDING_S:
        text = f"jobs waited a median of {fmt_s(wait)} for memory"
        if isinstance(margin, int | float) and margin > 0 and not report.ooms:
            text += (
                f"; no job ran out of memory, so a lower --safety-margin (now {margin:.2f}) "
                "would admit them sooner"
            )
        else:
            text += (
                "; the devices were full: a smaller model or a lighter --compute-type "
                "fits more instances at once"
            )
        out.append(text)
    wall = run.wall_s
    named = set()
    for d in report.devices:
        if wall > 0 and d.idle_while_waiting_s / wall >= IDLE_WHILE_WAITING_FINDING:
            named.add(d.id)
            where = " and ".join(d.waited_on)
            out.append(
                f"{d.id} was idle {d.idle_while_waiting_s / wall:.0%} of the time while jobs "
                f"waited for memory on {where}; those jobs did not fit in {d.id}'s free memory"
            )
    for d in report.devices:
        share = d.time.share("held_back")
        if d.id not in named and share >= HELD_BACK_FINDING:
            top = next((r.reason for r in report.reasons), "unknown")
            out.append(
                f"{d.id} ran nothing for {share:.0%} of the run while jobs were pending "
                f"(the most common reason: {top})"
            )
    cap = sum(r.seconds for r in report.reasons if r.reason.startswith("instance cap reached"))
    if cap >= CAP_WAIT_FINDING_S:
        out.append(
            f"jobs spent {fmt_s(cap)} in total waiting on the instance cap; "
            "--max-instances raises it if the devices have memory to spare"
        )
    return out
