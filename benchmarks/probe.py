"""A tiny jupyter_server extension loaded into OUR server during benchmarks (never shipped).

It measures from inside the server process, where only it can:

- the event loop's lag: a periodic tick records how late each wake-up is;
- AWS calls at the aiobotocore client boundary: every `_make_api_call`, with service,
  operation and wall-clock time (so a client-side timestamp can be compared with it);
- the start and end of each EC2 monitor cycle (`Monitor.run_cycle`), to group calls by cycle;
- garbage collections (`gc.callbacks`): each one stops every thread, the loop's too.

`GET /bench-probe/stats` returns the figures; `POST /bench-probe/reset` clears them (and starts the
tick; with `?debug=1`, asyncio's slow-callback report, `slow_callbacks.py`); `POST
/bench-probe/stop` stops the tick (and the report). All need the server's token like any
request.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from .slow_callbacks import REPORTS
from .threadstat import COLLECTIONS, run_delay

TICK = 0.005  # seconds between ticks


class _State:
    def __init__(self) -> None:
        self.lags: list[float] = []  # seconds each tick woke up late
        # CPU seconds the event loop's thread used during each tick's interval: a late tick
        # with little CPU means the loop was starved (other processes, the GIL), not busy.
        self.busy: list[float] = []
        # Seconds the loop's thread waited for a CPU (runnable, not running: other processes
        # had the cores) during each tick, from /proc/thread-self/schedstat.
        self.queued: list[float] = []
        self.calls: list[tuple[float, str, str]] = []  # (time.time(), service, operation)
        self.cycles: list[tuple[float, float]] = []  # EC2 monitor cycles: (start, end) times
        self.tick_task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.lags = []
        self.busy = []
        self.queued = []
        self.calls = []
        self.cycles = []
        COLLECTIONS.clear_log()


STATE = _State()


async def _tick() -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        cpu = time.thread_time()
        queued = run_delay()
        await asyncio.sleep(TICK)
        STATE.lags.append(max(0.0, loop.time() - before - TICK))
        STATE.busy.append(time.thread_time() - cpu)
        STATE.queued.append(run_delay() - queued)
        if len(STATE.lags) > 200_000:  # bounded: about 17 minutes of ticks
            del STATE.lags[:100_000]
            del STATE.busy[:100_000]
            del STATE.queued[:100_000]


def _count_aws_calls() -> None:
    try:
        from aiobotocore.client import AioBaseClient
    except ImportError:
        return
    original = AioBaseClient._make_api_call
    if getattr(original, "_bench_probe", False):
        return

    async def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        STATE.calls.append((time.time(), self.meta.service_model.service_name, operation_name))
        return await original(self, operation_name, api_params)

    counted._bench_probe = True  # type: ignore[attr-defined]
    AioBaseClient._make_api_call = counted


def _time_monitor_cycles() -> None:
    """Record the start and end of each EC2 monitor cycle, so AWS calls can be assigned to
    cycles. Best effort: if the monitor is not there (or renamed), cycles stay empty."""
    try:
        from awsjobs_lab.aws.monitor import Monitor
    except ImportError:
        return
    original = getattr(Monitor, "run_cycle", None)
    if original is None or getattr(original, "_bench_probe", False):
        return

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return await original(self, *args, **kwargs)
        finally:
            STATE.cycles.append((start, time.time()))

    timed._bench_probe = True  # type: ignore[attr-defined]
    Monitor.run_cycle = timed  # type: ignore[method-assign]


class ResetHandler(JupyterHandler):
    @web.authenticated
    async def post(self) -> None:
        STATE.reset()
        loop = asyncio.get_running_loop()
        if self.get_query_argument("debug", "0") == "1":
            REPORTS.start(loop)
        else:
            REPORTS.stop()
        if STATE.tick_task is None or STATE.tick_task.done():
            STATE.tick_task = loop.create_task(_tick())
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": True}))


class StopHandler(JupyterHandler):
    """Stop the tick (it wakes the loop 200 times a second: not for idle measurements)."""

    @web.authenticated
    async def post(self) -> None:
        task, STATE.tick_task = STATE.tick_task, None
        if task is not None:
            task.cancel()
        REPORTS.stop()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": True}))


class StatsHandler(JupyterHandler):
    @web.authenticated
    async def get(self) -> None:
        since = float(self.get_query_argument("since", "0"))
        # Costly figures only when asked: a poll for AWS calls every 10 ms must not load the
        # loop it measures (the tick series grows with every tick; counting tracked objects
        # lists them all).
        detail = self.get_query_argument("detail", "0") == "1"
        lags = sorted(STATE.lags)
        # What is left of each tick's lag once its wait for a CPU is taken out: the loop
        # itself busy or blocked, rather than the machine's other processes.
        own = sorted(max(0.0, lag - q) for lag, q in zip(STATE.lags, STATE.queued, strict=True))
        worst = max(range(len(STATE.lags)), key=STATE.lags.__getitem__, default=None)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "ticks": len(lags),
                    "max_lag": lags[-1] if lags else None,
                    "p99_lag": lags[int(0.99 * (len(lags) - 1))] if lags else None,
                    "p99_own_lag": own[int(0.99 * (len(own) - 1))] if own else None,
                    "max_own_lag": own[-1] if own else None,
                    # the loop thread's CPU during the worst tick, and the most in any tick
                    "worst_tick_cpu": STATE.busy[worst] if worst is not None else None,
                    "worst_tick_queued": STATE.queued[worst] if worst is not None else None,
                    "max_tick_cpu": max(STATE.busy, default=None),
                    "calls": [c for c in STATE.calls if c[0] >= since],
                    "cycles": [c for c in STATE.cycles if c[0] >= since],
                    "slow_callbacks": REPORTS.reports,
                    "collections": COLLECTIONS.log,
                    # what a full collection walks, and what it no longer does (gc.freeze)
                    # each tick: (lag, the loop thread's CPU, its wait for a CPU), in order
                    "tick_series": (
                        list(zip(STATE.lags, STATE.busy, STATE.queued, strict=True))
                        if detail
                        else None
                    ),
                    "tracked_objects": len(gc.get_objects()) if detail else None,
                    "frozen_objects": gc.get_freeze_count(),
                }
            )
        )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "benchmarks.probe"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    COLLECTIONS.install()
    _count_aws_calls()
    _time_monitor_cycles()
    base = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (base.rstrip("/") + "/bench-probe/reset", ResetHandler),
            (base.rstrip("/") + "/bench-probe/stats", StatsHandler),
            (base.rstrip("/") + "/bench-probe/stop", StopHandler),
        ],
    )
