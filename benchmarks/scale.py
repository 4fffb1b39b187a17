"""Scale targets of our server alone: list/get with 10,000 stored jobs, log tail on a 1 GiB log,
and the idle cost of 100 running jobs (the event loop under load: `loop.py`).

The store is seeded through the store's own API (`JobStore.insert`) before the server starts;
the 10,000 jobs are records, not runs.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from .ours import data_path, start_ours, wait_for_start_up_work
from .report import Report
from .servers import Server, log
from .util import (
    Client,
    Processes,
    cpu_seconds,
    io_counters,
    ms,
    p50,
    percentile,
    probe_stop,
    wait_until,
)

SECTION = "scale (ours)"
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
CHUNK = 64 * KIB
BLOCK = 4096
# Job ids are 16 hex digits (the routes accept nothing else).
BIG_LOG_JOB = "b16b16b16b16b16b"
SMALL_LOG_JOB = "5a115a115a115a11"


def make_job(index: int, created_at: float, **fields: Any) -> Any:
    """A finished local job record that looks like a real one (history, command, exit code)."""
    from awsjobs_lab.models import Job, JobState, Transition, new_job_id

    job_id = fields.pop("id", None) or new_job_id()
    path = fields.pop("path", f"work/analysis_{index % 97}.py")
    states = [
        JobState.PENDING,
        JobState.LAUNCHING,
        JobState.RUNNING,
        JobState.SUCCEEDED if index % 10 else JobState.FAILED,
    ]
    history = [Transition(s, created_at + n * 0.5, None) for n, s in enumerate(states)]
    values: dict[str, Any] = {
        "id": job_id,
        "path": path,
        "backend": "local",
        "state": states[-1],
        "created_at": created_at,
        "updated_at": created_at + 2.0,
        "memory_gib": 4.0,
        "cpus": 1,
        "spot": False,
        "max_lifetime_minutes": 240,
        "log_path": f"work/analysis_{index % 97}.{job_id}.log",
        "env": {"SEED": str(index)},
        "command": ["python", path.rsplit("/", 1)[-1]],
        "exit_code": 0 if states[-1] is JobState.SUCCEEDED else 1,
        "error": None if states[-1] is JobState.SUCCEEDED else "exited with code 1",
        "started_at": created_at + 1.0,
        "finished_at": created_at + 2.0,
        "handle": {"pid": 100000 + index, "pgid": 100000 + index, "start_time": 1},
        "history": history,
    }
    values.update(fields)
    return Job(**values)


async def seed_store(db: Path, count: int, extra: list[Any]) -> float:
    """Insert `count` finished jobs plus `extra` through `JobStore.insert`; seconds taken."""
    from awsjobs_lab.store import JobStore

    store = JobStore(db)
    await store.open()
    start = time.perf_counter()
    try:
        base = time.time() - count
        for index in range(count):
            await store.insert(make_job(index, base + index))
        for job in extra:
            await store.insert(job)
    finally:
        await store.close()
    return time.perf_counter() - start


def write_log(path: Path, size: int) -> None:
    """A text log of `size` bytes (numbered lines), written in 1 MiB pieces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = b"%09d some job output that goes on for a while, as logs do ........\n"
    piece = b"".join(line % n for n in range(MIB // len(line % 0) + 1))[:MIB]
    with path.open("wb") as f:
        written = 0
        while written < size:
            n = min(MIB, size - written)
            f.write(piece[:n])
            written += n


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    base = tmp / "ours-scale"
    root = base / "root"
    count = 10_000
    big = 1 * GIB if not quick else 256 * MIB
    write_log(root / "logs" / "big.log", big)
    write_log(root / "logs" / "small.log", MIB)
    (root / "logs" / "big.py").write_text("print('x')\n")
    now = time.time()
    log_jobs = [
        make_job(0, now, id=BIG_LOG_JOB, path="logs/big.py", log_path="logs/big.log"),
        make_job(1, now, id=SMALL_LOG_JOB, path="logs/big.py", log_path="logs/small.log"),
    ]
    seconds = asyncio.run(seed_store(data_path(base) / "jobs.sqlite", count, log_jobs))
    log(f"seeded {count} jobs through JobStore.insert in {seconds:.1f} s")
    server = start_ours(procs, base)
    answered = time.monotonic()
    log(f"our server on 127.0.0.1:{server.port} with {count + 2} stored jobs")
    client = server.client()
    try:
        list_and_get(report, client, count, 60 if quick else 300)
        wait_for_start_up_work(server, answered)
        log_tail(report, server, client, big, 40 if quick else 200)
        idle(report, server, client, jobs=20 if quick else 100, seconds=15.0 if quick else 60.0)
    finally:
        client.close()
        procs.stop(server.proc)


def list_and_get(report: Report, client: Client, count: int, n: int) -> None:
    first = client.get("/awsjobs/api/jobs").json()
    ids = [j["id"] for j in first["jobs"]]
    # Ids from all over the store, not only the newest page.
    page = client.get("/awsjobs/api/jobs?limit=500").json()
    ids += [j["id"] for j in page["jobs"]]
    cursor = page.get("next_cursor")
    for _ in range(5):
        if not cursor:
            break
        page = client.get(f"/awsjobs/api/jobs?limit=500&cursor={cursor}").json()
        ids += [j["id"] for j in page["jobs"]]
        cursor = page.get("next_cursor")
    for _ in range(10):  # warm-up
        client.get("/awsjobs/api/jobs")
    lists = [client.get("/awsjobs/api/jobs").seconds for _ in range(n)]
    rng = random.Random(6)
    gets = [client.get(f"/awsjobs/api/jobs/{rng.choice(ids)}").seconds for _ in range(n)]
    page_size = len(first["jobs"])
    report.limit_row(
        SECTION,
        f"list p50, first page ({page_size} jobs), {count:,} in the store ({n} GETs)",
        ms(p50(lists)),
        15.0,
        note=f"p90 {ms(percentile(lists, 90)):.1f} ms",
    )
    report.limit_row(
        SECTION,
        f"get one job p50, {count:,} in the store ({n} GETs)",
        ms(p50(gets)),
        5.0,
        note=f"p90 {ms(percentile(gets, 90)):.1f} ms",
    )


def log_tail(report: Report, server: Server, client: Client, big: int, n: int) -> None:
    """One `log?offset=` poll for the next 64 KiB near the end of a big and of a 1 MiB log."""
    jobs = {"big": (BIG_LOG_JOB, big), "small": (SMALL_LOG_JOB, MIB)}
    times: dict[str, list[float]] = {"big": [], "small": []}
    read: dict[str, list[int]] = {"big": [], "small": []}
    returned: dict[str, list[int]] = {"big": [], "small": []}
    rng = random.Random(7)
    for i in range(n + 5):
        for name, (job_id, size) in jobs.items():
            # A follower's next poll: 64 KiB somewhere in the last 256 KiB (not at eof).
            offset = size - 4 * CHUNK + rng.randrange(0, 3 * CHUNK)
            before = io_counters(server.pid)["rchar"]
            resp = client.get(f"/awsjobs/api/jobs/{job_id}/log?offset={offset}&limit={CHUNK}")
            after = io_counters(server.pid)["rchar"]
            body = resp.json()
            if i < 5:
                continue  # warm-up
            times[name].append(resp.seconds)
            read[name].append(after - before)
            returned[name].append(body["next_offset"] - body["offset"])
    ratio_big = p50(times["big"]) / p50(times["small"])
    report.limit_row(
        SECTION,
        f"log tail: p50 of a 64 KiB poll, {big // MIB:,} MiB log ÷ 1 MiB log ({n} polls each)",
        ratio_big,
        1.2,
        unit="",
        strict=False,
        note=f"{ms(p50(times['big'])):.2f} ms vs {ms(p50(times['small'])):.2f} ms",
    )
    worst_excess = max(r - b for r, b in zip(read["big"], returned["big"], strict=True))
    report.limit_row(
        SECTION,
        "log tail: bytes read per poll beyond the bytes returned (worst poll, big log)",
        float(worst_excess),
        float(BLOCK),
        unit="B",
        strict=False,
        note=(
            f"read p50 {p50([float(x) for x in read['big']]):.0f} B for "
            f"{p50([float(x) for x in returned['big']]):.0f} B returned; "
            "rchar of the server process (all read()/pread() bytes)"
        ),
    )


def idle(report: Report, server: Server, client: Client, jobs: int, seconds: float) -> None:
    script = server.root / "idle" / "sleepy.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    # Bounded: each job ends by itself even if nothing stops it.
    script.write_text(f"sleep {int(seconds) + 120}\n")
    ids = [
        client.post("/awsjobs/api/jobs", {"path": "idle/sleepy.sh"}).json()["id"]
        for _ in range(jobs)
    ]

    def all_running() -> bool:
        page = client.get("/awsjobs/api/jobs?state=running&limit=500").json()
        return len({j["id"] for j in page["jobs"]} & set(ids)) == len(ids)

    wait_until(all_running, timeout=120, interval=0.5, what=f"{jobs} sleeping jobs to run")
    probe_stop(client)  # the probe's own 5 ms tick is not the server's cost
    time.sleep(3.0)  # let the launch work settle
    before = cpu_seconds(server.pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(server.pid) - before
    elapsed = time.monotonic() - t0
    percent = 100.0 * used / elapsed
    report.limit_row(
        SECTION,
        f"idle cost: server CPU with {jobs} running local jobs that sleep, over {seconds:.0f} s",
        percent,
        2.0,
        unit="%",
        note=f"{used:.2f} CPU-s of the server process (not its children)",
    )
    for job_id in ids:
        client.post(f"/awsjobs/api/jobs/{job_id}/stop")

    def all_stopped() -> bool:
        page = client.get("/awsjobs/api/jobs?state=stopping,running&limit=500").json()
        return not ({j["id"] for j in page["jobs"]} & set(ids))

    try:
        wait_until(all_stopped, timeout=60, interval=0.5, what="the sleeping jobs to stop")
    except TimeoutError as exc:
        log(str(exc))
