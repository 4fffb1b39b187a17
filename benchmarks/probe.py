"""A tiny jupyter_server extension loaded into OUR server during benchmarks (never shipped).

It measures from inside the server process, where only it can:

- the event loop's lag: a periodic tick records how late each wake-up is;
- AWS calls at the aiobotocore client boundary: every `_make_api_call`, with service,
  operation and wall-clock time (so a client-side timestamp can be compared with it).

`GET /bench-probe/stats` returns the figures; `POST /bench-probe/reset` clears them (and starts the
tick the first time). Both need the server's token like any other request.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

TICK = 0.005  # seconds between ticks


class _State:
    def __init__(self) -> None:
        self.lags: list[float] = []  # seconds each tick woke up late
        self.calls: list[tuple[float, str, str]] = []  # (time.time(), service, operation)
        self.tick_task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.lags = []
        self.calls = []


STATE = _State()


async def _tick() -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(TICK)
        STATE.lags.append(max(0.0, loop.time() - before - TICK))
        if len(STATE.lags) > 200_000:  # bounded: about 17 minutes of ticks
            del STATE.lags[:100_000]


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


class ResetHandler(JupyterHandler):
    @web.authenticated
    async def post(self) -> None:
        STATE.reset()
        if STATE.tick_task is None or STATE.tick_task.done():
            STATE.tick_task = asyncio.get_running_loop().create_task(_tick())
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": True}))


class StatsHandler(JupyterHandler):
    @web.authenticated
    async def get(self) -> None:
        lags = sorted(STATE.lags)
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "ticks": len(lags),
                    "max_lag": lags[-1] if lags else None,
                    "p99_lag": lags[int(0.99 * (len(lags) - 1))] if lags else None,
                    "calls": STATE.calls,
                }
            )
        )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "benchmarks.probe"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    _count_aws_calls()
    base = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (base.rstrip("/") + "/bench-probe/reset", ResetHandler),
            (base.rstrip("/") + "/bench-probe/stats", StatsHandler),
        ],
    )
