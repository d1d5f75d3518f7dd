"""Options shared by ``transcribe`` and ``serve``; their defaults come from ``settings.py``
(run and service) and from :class:`~vramscribe.submit.request.JobRequest` (per job)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vramscribe.core.jobs import DEFAULT_PRIORITY, PRIORITY_NAMES
from vramscribe.core.limits import MemoryLimits, check_fraction, parse_device_sizes
from vramscribe.core.retry import FALLBACK_RUNGS
from vramscribe.core.settings import Settings
from vramscribe.errors import InvalidLimit, InvalidRequest
from vramscribe.settings import RunSettings, default
from vramscribe.submit import request as req

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PRIORITY_NAME = {v: k for k, v in PRIORITY_NAMES.items()}[DEFAULT_PRIORITY]


def job_default(name: str) -> Any:
    """The default of a per-job option."""
    return default(req.JobRequest, name)


def parse_batch_size(ctx: click.Context, param: click.Parameter, value: object) -> int:
    """``auto`` (0 inside: the planner chooses) or a batch size of 1-64."""
    try:
        return req.parse_batch_size(value)
    except InvalidRequest as exc:
        raise click.BadParameter(str(exc)) from None


def instance_options(keep_alive_s: float) -> Callable[[F], F]:
    """Options of warm instances, shared by ``transcribe`` and ``serve``."""

    def add(fn: F) -> F:
        fn = click.option(
            "--max-jobs-per-instance",
            default=default(Settings, "max_jobs_per_instance"),
            show_default=True,
            type=click.IntRange(1),
            help="Jobs one instance serves before it is replaced (bounds leaks and caches).",
        )(fn)
        fn = click.option(
            "--keep-alive",
            default=keep_alive_s,
            show_default=True,
            type=click.FloatRange(0),
            help="Seconds an idle instance waits for work of its model before it is released.",
        )(fn)
        return click.option(
            "--reuse/--no-reuse",
            default=default(Settings, "reuse"),
            show_default=True,
            help="Keep a loaded instance for the next file of the same model "
            "(--no-reuse: one instance per file).",
        )(fn)

    return add


def instance_settings(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "reuse": opts["reuse"],
        "keep_alive_s": opts["keep_alive"],
        "max_jobs_per_instance": opts["max_jobs_per_instance"],
    }


# -- limits users set (transcribe, serve, simulate, devices) -------------------------------
def _limits_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Read a limit option at once, so a bad value is a usage error naming the option."""
    try:
        if param.name == "memory_fraction":
            return check_fraction(value)
        return parse_device_sizes(value, f"--{str(param.name).replace('_', '-')}")
    except InvalidLimit as exc:
        raise click.BadParameter(str(exc)) from None


def limit_options(fn: F) -> F:
    """``--memory-limit``, ``--memory-fraction`` and ``--reserve`` (core/limits.py)."""
    fn = click.option(
        "--reserve",
        multiple=True,
        callback=_limits_callback,
        metavar="DEVICE=SIZE",
        help="Memory always left to other processes on a device, e.g. cuda:1=10GiB "
        "(subtracted from free memory like the safety margin; repeatable).",
    )(fn)
    fn = click.option(
        "--memory-fraction",
        type=float,
        callback=_limits_callback,
        help="The most vramscribe holds on every device, as a fraction of its total "
        "memory, in (0, 1].",
    )(fn)
    return click.option(
        "--memory-limit",
        multiple=True,
        callback=_limits_callback,
        metavar="DEVICE=SIZE",
        help="The most vramscribe holds on a device, reserved plus in use, "
        "e.g. cuda:0=16GiB (repeatable).",
    )(fn)


def memory_limits(opts: dict[str, Any]) -> MemoryLimits:
    """The limits the options of :func:`limit_options` ask for."""
    return MemoryLimits(
        memory_limit_bytes=opts["memory_limit"],
        memory_fraction=opts["memory_fraction"],
        reserve_bytes=opts["reserve"],
    )


# -- the fallback ladder (transcribe, serve) -----------------------------------------------
def _fallback_callback(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...]:
    rungs = tuple(r.strip().lower() for r in (value or "").split(",") if r.strip())
    unknown = [r for r in rungs if r not in FALLBACK_RUNGS]
    if unknown:
        raise click.BadParameter(
            f"unknown rung {', '.join(map(repr, unknown))}; the rungs are "
            f"{' and '.join(FALLBACK_RUNGS)}, e.g. --fallback int8,cpu"
        )
    return rungs


fallback_option = click.option(
    "--fallback",
    default="",
    callback=_fallback_callback,
    metavar="RUNGS",
    help="After out-of-memory failures, beyond a smaller batch: retry with int8 weights, "
    "then on the CPU (e.g. int8,cpu; one attempt each).",
)


def run_options(
    keep_alive_s: float, max_wait_for_memory_s: float = default(Settings, "max_wait_for_memory_s")
) -> Callable[[F], F]:
    """Devices, capacity, timeouts, warm instances and the engine: how a run runs."""
    options = [
        click.option(
            "--device",
            default=default(RunSettings, "device"),
            show_default=True,
            help="auto, cpu, cuda, or cuda:0,cuda:1 (auto: all GPUs NVML finds, else the CPU).",
        ),
        click.option(
            "--max-instances",
            type=click.IntRange(1, 256),
            help="Most model instances at once, all devices.",
        ),
        click.option(
            "--safety-margin",
            default=default(Settings, "safety_margin"),
            show_default=True,
            type=click.FloatRange(0, 0.9),
            help="Fraction of each device's memory never handed out.",
        ),
        click.option(
            "--max-wait-for-memory",
            default=max_wait_for_memory_s,
            show_default=True,
            type=click.FloatRange(0),
            help="Seconds a job may stay blocked by memory other processes hold (it would fit "
            "on the empty device) before it fails with the reason; waits for our own jobs "
            "do not count.",
        ),
        click.option(
            "--cpu-threads",
            default=default(RunSettings, "cpu_threads"),
            show_default=True,
            type=click.IntRange(1, 256),
            help="Threads per instance on the CPU (instances = cores / threads).",
        ),
        click.option(
            "--hang-timeout",
            default=default(RunSettings, "hang_timeout_s"),
            show_default=True,
            help="Seconds without progress.",
        ),
        instance_options(keep_alive_s),
        limit_options,
        fallback_option,
        click.option("--engine", default=job_default("engine"), hidden=True),
        click.option("--fake-config", default="{}", hidden=True),
    ]

    def add(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return add


def run_settings(opts: dict[str, Any]) -> RunSettings:
    """The run the options of :func:`run_options` ask for."""
    scheduler = Settings(
        safety_margin=opts["safety_margin"],
        max_instances_total=opts["max_instances"] or default(Settings, "max_instances_total"),
        max_wait_for_memory_s=opts["max_wait_for_memory"],
        **instance_settings(opts),
        limits=memory_limits(opts),
        fallback=opts["fallback"],
    )
    return RunSettings(
        device=opts["device"],
        cpu_threads=opts["cpu_threads"],
        hang_timeout_s=opts["hang_timeout"],
        scheduler=scheduler,
    )


def fake_config(opts: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(opts["fake_config"])
    return config
