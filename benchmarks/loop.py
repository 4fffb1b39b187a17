"""Our server's event loop under load (issue 15): 200 local jobs created at once while 50 logs
are followed, through the REST API of the real server.

Two kinds of pass of the same load on one server, each run three times (the rows give the
median pass and list every pass): the first measures the loop's tick lag (the probe's 5 ms
tick, `probe.py`); the second turns on asyncio's slow-callback report with a 5 ms threshold
(debug mode's timing of each callback, without the rest of debug mode) and counts its reports
(`slow_callbacks.py`), attributed to our code or not. The timing costs every callback
something, so that pass does not time the lag. The passes start once the server's start-up
work (its first AWS client) is over; that work's slow callbacks are a row of their own.

A log is followed as our clients follow one: read on while there is more, and at its end wait
the log view's poll interval (`logPollIntervalSeconds` in schema/plugin.json, 1 s; the CLI's
`Job.log(follow=True)` waits as long). One more lag pass follows them ten times as often
(0.1 s: 50 logs then load the server like 500 open log views), reported without a target.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from .ours import start_ours, wait_for_start_up_work
from .report import Report, Row
from .servers import Server, log
from .util import REPO, Client, Processes, median_item, ms, probe_reset, probe_stats, probe_stop

SECTION = "loop (ours, local)"
SLOW_CALLBACK = 0.005  # seconds: asyncio's slow_callback_duration in the debug pass
FOLLOW_SECONDS = 10.0
PASSES = 3  # of each measurement; the rows give the median pass
STRESS_POLL_SECONDS = 0.1  # the stress pass's wait at the end of a log


def log_view_poll_seconds() -> float:
    """How long the log view waits at the end of a log: its setting's default (the
    extension's settings schema), so the benchmark follows the product's own cadence."""
    schema = json.loads((REPO / "schema" / "plugin.json").read_text())
    return float(schema["properties"]["logPollIntervalSeconds"]["default"])


@dataclass(frozen=True)
class Load:
    """The load of a pass, on our server: `jobs` POSTed at once, the logs of the first
    `followers` followed `poll` seconds apart at their end; `passes` of it per measurement."""

    server: Server
    client: Client
    jobs: int
    followers: int
    passes: int
    poll: float


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    server = start_ours(procs, tmp / "ours-loop")
    answered = time.monotonic()
    log(f"our server on 127.0.0.1:{server.port}")
    client = server.client()
    jobs, followers = (40, 10) if quick else (200, 50)
    load = Load(server, client, jobs, followers, 1 if quick else PASSES, log_view_poll_seconds())
    try:
        write_chatty_script(server.root)
        start_up_work(report, server, client, answered)
        lag_pass(report, load)
        slow_callback_pass(report, load)
        stress_pass(report, replace(load, passes=1, poll=STRESS_POLL_SECONDS))
        control_burst(report, server, client, jobs)
    finally:
        client.close()
        procs.stop(server.proc)


def start_up_work(report: Report, server: Server, client: Client, answered: float) -> None:
    """The server's delayed start-up work (orphan sweep, first import of remote schedules' runs:
    the EC2 client made), once per start, on its own: the passes under load come after it, so
    that it counts here and not in whichever pass it would fall."""
    probe_reset(client, debug=True)
    wait_for_start_up_work(server, answered, quiet_bytes=64 * 1024)
    stats = probe_stats(client)
    probe_stop(client)
    tally = _SlowCallbacks(stats["slow_callbacks"])
    longest = max((r["own_seconds"] for r in tally.ours), default=0.0)
    report.add(
        Row(
            SECTION,
            "callbacks of ours longer than 5 ms during the server's start-up work (orphan "
            "sweep and first import of remote schedules' runs, which make the EC2 client; once "
            "per server start, no load; asyncio's slow-callback report)",
            "callbacks",
            float(len(tally.ours)),
            note=(
                f"ours: {_sites(tally.ours, 'ours') or 'none'}; the longest {ms(longest):.1f} ms;"
                f" {len(tally.reports)} reports in all; the largest stall "
                f"{ms(stats['max_lag'] or 0):.1f} ms"
            ),
        )
    )


def write_chatty_script(root: Path) -> None:
    script = root / "load" / "chatty.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    # About 6 s of output, a line every 0.1 s, and no CPU: bash builtins only (`read -t` on a
    # pipe nobody writes is a sleep without a fork), so the machine is not what is measured.
    script.write_text(
        "exec 3<> <(:)\n"
        'for i in {1..60}; do echo "line $i of a job that talks"; read -t 0.1 -u 3 || true; done\n'
    )


async def create_and_follow(
    server: Server,
    jobs: int,
    followers: int,
    poll_seconds: float,
    follow_seconds: float = FOLLOW_SECONDS,
) -> dict[str, float]:
    """POST `jobs` jobs at once; the first `followers` have their logs followed (`offset`
    polls, as the panel's log view does: on while there is more, `poll_seconds` apart at the
    end of the log) while the rest are created."""
    headers = {"Authorization": f"token {server.token}"}
    url = f"http://127.0.0.1:{server.port}/awsjobs/api"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    # Keep the login cookie the server sets, as a browser does (aiohttp's default jar drops
    # cookies of an IP address), so each request is not a new token login.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=timeout, cookie_jar=jar
    ) as session:

        async def create() -> str:
            async with session.post(f"{url}/jobs", json={"path": "load/chatty.sh"}) as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"POST jobs: {resp.status} {body}")
                return str(body["id"])

        polls = 0

        async def follow(job_id: str, until: float) -> None:
            nonlocal polls
            offset = 0
            while time.monotonic() < until:
                async with session.get(f"{url}/jobs/{job_id}/log?offset={offset}") as resp:
                    body = await resp.json()
                polls += 1
                offset = body["next_offset"]
                if body["complete"]:
                    return
                await asyncio.sleep(poll_seconds if body["eof"] else 0)

        start = time.monotonic()
        first = await asyncio.gather(*(create() for _ in range(followers)))
        until = time.monotonic() + follow_seconds
        following = [asyncio.ensure_future(follow(job_id, until)) for job_id in first]
        await asyncio.gather(*(create() for _ in range(followers, jobs)))
        created = time.monotonic() - start
        await asyncio.gather(*following)
    return {"created_s": created, "polls": polls}


def wait_for_jobs_to_end(client: Client, timeout: float = 90.0) -> None:
    """Bounded: the chatty jobs of a pass end by themselves in seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = client.get("/awsjobs/api/jobs?state=pending,launching,running,stopping").json()
        if not active["jobs"]:
            return
        time.sleep(1.0)
    log("some jobs were still active after 90 s")


def _apply(load: Load) -> dict[str, float]:
    return asyncio.run(create_and_follow(load.server, load.jobs, load.followers, load.poll))


def _lag_runs(load: Load) -> tuple[dict[str, Any], list[Run]]:
    """The probe's figures idle, then for each of the passes the probe's figures."""
    client = load.client
    probe_reset(client)
    time.sleep(1.0)
    quiet = probe_stats(client)
    runs = []
    for _ in range(load.passes):
        probe_reset(client)
        load_average = os.getloadavg()[0]
        figures = _apply(load)
        stats = probe_stats(client, detail=True)
        wait_for_jobs_to_end(client)
        runs.append((stats, figures, load_average))
    return quiet, runs


def lag_pass(report: Report, load: Load) -> None:
    """`passes` times the same load; each row is the median pass (a 2-core machine shared
    with 200 job processes and the load generator varies from one pass to the next)."""
    quiet, runs = _lag_runs(load)
    jobs, passes = load.jobs, load.passes
    what = (
        f"while {jobs} jobs are created concurrently and {load.followers} logs followed "
        f"(polled {load.poll:g} s apart at their end, as the log view does)"
    )
    stats, figures, load_average = _median_run(runs, "p99_lag")
    report.limit_row(
        SECTION,
        f"event loop: p99 tick lag {what} (median of {passes} passes)",
        ms(stats["p99_lag"]),
        20.0,
        note=(
            f"passes: {_each(runs, 'p99_lag')} ms; the median pass: "
            f"{stats['ticks']} ticks of 5 ms, {_late(stats)} of them 20 ms late or more; "
            "without the loop thread's wait for a CPU "
            f"(other processes had the cores) p99 {ms(stats['p99_own_lag'] or 0):.1f} ms; "
            f"{jobs} POSTs took {figures['created_s']:.1f} s; {figures['polls']:.0f} log polls; "
            f"idle before: max {ms(quiet['max_lag'] or 0):.1f} ms; load average "
            f"{load_average:.1f} on {os.cpu_count()} cores at the start"
        ),
    )
    stats, _, _ = _median_run(runs, "max_lag")
    report.limit_row(
        SECTION,
        f"event loop: largest single stall {what} (median of {passes} passes)",
        ms(stats["max_lag"]),
        100.0,
        note=(
            f"passes: {_each(runs, 'max_lag')} ms; in the median pass, the worst tick: loop "
            f"thread on CPU {ms(stats['worst_tick_cpu'] or 0):.1f} ms, "
            f"waiting for a CPU {ms(stats['worst_tick_queued'] or 0):.1f} ms, the rest "
            "blocked (the GIL held by another thread, or a blocking call); the largest "
            f"without its CPU wait {ms(stats['max_own_lag'] or 0):.1f} ms; most CPU in any "
            f"tick {ms(stats['max_tick_cpu'] or 0):.1f} ms; {_collections(stats)}"
        ),
    )


Run = tuple[dict[str, Any], dict[str, float], float]  # probe stats, load figures, load average


def _median_run(runs: list[Run], key: str) -> Run:
    """The run whose `key` figure is the median."""
    return median_item(runs, lambda run: run[0][key])


def _each(runs: list[Run], key: str) -> str:
    return ", ".join(f"{ms(run[0][key]):.1f}" for run in runs)


def _late(stats: dict[str, Any], limit: float = 0.020) -> int:
    return sum(1 for lag, _cpu, _queued in stats["tick_series"] if lag >= limit)


def _collections(stats: dict[str, Any]) -> str:
    """The garbage collections of the pass by generation (each one stops every thread)."""
    by_generation: dict[int, list[float]] = defaultdict(list)
    for generation, seconds in stats["collections"]:
        by_generation[generation].append(seconds)
    names = {0: "young", 1: "middle", 2: "full"}
    counted = ", ".join(
        f"{len(by_generation[g])} {names[g]} (longest {ms(max(by_generation[g], default=0)):.1f}"
        " ms)"
        for g in (0, 1, 2)
    )
    return (
        f"garbage collections: {counted} ({stats['tracked_objects']:,} objects tracked, "
        f"{stats['frozen_objects']:,} frozen at the start)"
    )


def _sites(reports: list[dict[str, Any]], key: str, top: int = 3) -> str:
    """'site xcount (max N ms)' for the most frequent sites of `reports`."""
    counts = Counter(r[key] or "not sampled" for r in reports)
    longest: dict[str, float] = defaultdict(float)
    for r in reports:
        site = r[key] or "not sampled"
        longest[site] = max(longest[site], r["seconds"])
    return "; ".join(
        f"{site} x{n} (max {ms(longest[site]):.0f} ms)" for site, n in counts.most_common(top)
    )


def stress_pass(report: Report, load: Load) -> None:
    """One lag pass with the logs followed more often than the log view does: how the loop
    fares past the product's own load (no target)."""
    _, runs = _lag_runs(load)
    stats, figures, _ = runs[0]
    report.add(
        Row(
            SECTION,
            f"event loop, stress: p99 tick lag and largest stall while {load.jobs} jobs are "
            f"created concurrently and {load.followers} logs followed {load.poll:g} s apart at "
            "their end (ten times the log view's rate; one pass)",
            "ms",
            ms(stats["p99_lag"]),
            note=(
                f"largest stall {ms(stats['max_lag']):.1f} ms; without the loop thread's wait "
                f"for a CPU p99 {ms(stats['p99_own_lag'] or 0):.1f} ms; "
                f"{figures['polls']:.0f} log polls; {_collections(stats)}"
            ),
        )
    )


def slow_callback_pass(report: Report, load: Load) -> None:
    """`passes` times the load with asyncio's slow-callback report on; each row is the median
    pass."""
    client, passes = load.client, load.passes
    tallies = []
    for _ in range(passes):
        probe_reset(client, debug=True)
        _apply(load)
        stats = probe_stats(client)
        probe_stop(client)
        wait_for_jobs_to_end(client)
        tallies.append(_SlowCallbacks(stats["slow_callbacks"]))
    for r in sorted(tallies[-1].reports, key=lambda r: -r["seconds"])[:15]:
        log(
            f"slow callback {ms(r['seconds']):.0f} ms (alone {ms(r['own_seconds']):.0f}, cpu "
            f"{ms(r['cpu'] or 0):.0f}, waiting for a CPU {ms(r['queued'] or 0):.0f}, garbage "
            f"collection {ms(r.get('collecting') or 0):.0f}): "
            f"ours={r['ours']} where={r['where']} handle={r['handle'][:100]}"
        )
    what = (
        f"{load.jobs} concurrent creates and {load.followers} followed logs (polled "
        f"{load.poll:g} s apart at their end; asyncio's slow-callback report, "
        f"slow_callback_duration 5 ms; median of {passes} passes)"
    )
    tally = median_item(tallies, lambda t: len(t.ours))
    note = f"passes: {', '.join(str(len(t.ours)) for t in tallies)}; the median pass: "
    note += f"{len(tally.reports)} reports in all, {len(tally.others)} not in our code"
    if tally.others:
        note += f" ({_sites(tally.others, 'where')})"
    report.limit_row(
        SECTION,
        f"callbacks of ours longer than 5 ms, {what}",
        float(len(tally.ours)),
        0.0,
        unit="callbacks",
        strict=False,
        note=(
            f"{note}; ours: {_sites(tally.ours, 'ours') or 'none'}; attributed by sampling the "
            f"loop thread's stack during each callback; {len(tally.reported)} of ours "
            f"reported, {len(tally.reported) - len(tally.ours)} of them under 5 ms without "
            "the probe's own reads around them (each gives up the GIL, and under load waits "
            f"to get it back); {_collected(tally.ours)}"
        ),
    )
    tally = median_item(tallies, lambda t: len(t.own))
    report.limit_row(
        SECTION,
        f"callbacks of ours longer than 5 ms without their wait for a CPU, {what}",
        float(len(tally.own)),
        0.0,
        unit="callbacks",
        strict=False,
        note=(
            f"passes: {', '.join(str(len(t.own)) for t in tallies)}; the median pass: "
            f"{len(tally.busy)} of ours used 5 ms of CPU or more; "
            f"{len(tally.ours) - len(tally.own)} of ours were slow only because the loop "
            "thread was waiting for a CPU (/proc schedstat around each callback); "
            f"left: {_sites(tally.own, 'ours') or 'none'}; {_collected(tally.own)}"
        ),
    )


def _collected(reports: list[dict[str, Any]]) -> str:
    """How many of `reports` had a garbage collection inside them (a collection holds the GIL,
    whichever thread's allocation set it off)."""
    pauses = [r["collecting"] for r in reports if (r.get("collecting") or 0.0) >= 0.001]
    longest = f" (the longest {ms(max(pauses)):.0f} ms)" if pauses else ""
    return f"{len(pauses)} of those had a garbage collection of 1 ms or more inside{longest}"


class _SlowCallbacks:
    """One pass's slow-callback reports, sorted into what the rows count."""

    def __init__(self, reports: list[dict[str, Any]]) -> None:
        self.reports = reports
        self.reported = [r for r in reports if r["ours"]]
        # asyncio's report times the probe's /proc reads around each callback too
        # (`_measured_run`): a callback of ours counts when it alone took the 5 ms.
        self.ours = [r for r in self.reported if r["own_seconds"] >= SLOW_CALLBACK]
        self.others = [r for r in reports if not r["ours"]]
        # What is left of a callback's time once its wait for a CPU is taken out: its own.
        self.own = [
            r for r in self.ours if r["own_seconds"] - (r["queued"] or 0.0) >= SLOW_CALLBACK
        ]
        self.busy = [r for r in self.ours if (r["cpu"] or 0.0) >= SLOW_CALLBACK]


async def _concurrent_gets(server: Server, path: str, n: int) -> None:
    headers = {"Authorization": f"token {server.token}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def one() -> None:
            async with session.get(f"http://127.0.0.1:{server.port}{path}") as resp:
                await resp.read()

        await asyncio.gather(*(one() for _ in range(n)))


def control_burst(report: Report, server: Server, client: Client, n: int) -> None:
    """The same number of concurrent requests that start nothing (GET one job). asyncio runs
    every ready callback of a loop iteration before the tick's timer, so a burst of requests
    alone shows up as one stall; this separates that from launching."""
    probe_reset(client)
    time.sleep(0.5)
    job_id = client.get("/awsjobs/api/jobs?limit=1").json()["jobs"][0]["id"]
    asyncio.run(_concurrent_gets(server, f"/awsjobs/api/jobs/{job_id}", n))
    control = probe_stats(client)
    probe_stop(client)
    report.add(
        Row(
            SECTION,
            f"event loop, control: largest stall during {n} concurrent GETs of one job",
            "ms",
            ms(control["max_lag"] or 0),
            note=(
                f"worst tick: loop thread on CPU {ms(control['worst_tick_cpu'] or 0):.1f} ms, "
                f"waiting for a CPU {ms(control['worst_tick_queued'] or 0):.1f} ms"
            ),
        )
    )
