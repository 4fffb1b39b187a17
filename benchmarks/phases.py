"""What a user waits for (issue 15): our share of the wait, beside AWS's own.

EC2, on the simulated AWS (`tests/awssim`) in this process with its worker running the real boot
script and command text: AWS's delays are realistic (boot 30 s, SSM agent registration 15 s
after boot, EFS mount 5 s) divided by `SCALE` so the run lasts about a minute; ours are not
scaled (SendCommand's cadence, the monitor's 15 s cycle and 1 s look at the job files, at their
defaults). Jobs run through the real JobService and store; each is a script that sleeps 30 s
(scaled too). Per job:
- agent registered (the simulator's own time of it) → command accepted (the job's `preparing`
  phase entry): p50 ≤ 2 s; and the SendCommand calls per launching job per 2 s of its wait;
- command ended (the exit-code file's mtime) → the job reads final (its `finished_at`):
  p50 ≤ 5 s, EFS; and for S3 storage (`storage = "s3"`, the simulator's S3 through the same
  endpoint, its worker's `aws` shim; the same script, which also writes a file the job brings
  back): the exit code written to S3 (first seen by a 50 ms watch of the bucket) → final,
  outputs downloaded, the S3 follower at its default interval;
- POST → final, minus what AWS and the script take (boot + registration + mount + the script):
  our overhead, ≤ 10 s, reported beside the total.

Local: the first notebook job after our server starts (its warm runner perhaps not ready) against
the median of the three after it: at most 1.2 times (the median of three server starts).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path, PurePosixPath
from typing import Any

from .ours import DUMMY_AWS, start_ours
from .report import Report
from .servers import log
from .util import Processes, median_item, p50

SECTION = "phases (ours, simulated AWS)"
LOCAL_SECTION = "phases (ours, local)"
SCALE = 5.0  # AWS's delays and the script divided by this
BOOT, REGISTER, MOUNT, SCRIPT = 30.0, 15.0, 5.0, 30.0  # seconds on AWS (unscaled)
JOBS = 4
S3_BUCKET = "awsjobs-bench-phases"


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    os.environ.update({k: v for k, v in DUMMY_AWS.items() if k != "AWS_ENDPOINT_URL"})
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    asyncio.run(_ec2(report, tmp / "phases-ec2", 2 if quick else JOBS))
    asyncio.run(_ec2_s3(report, tmp / "phases-s3", 2 if quick else JOBS))
    _local_first_job(report, procs, tmp / "phases-local", 2 if quick else 3, 1 if quick else 3)


# -- EC2 on the simulator -------------------------------------------------------------------


def _clock() -> dict[str, float]:
    return {
        "tick_seconds": 0.05,
        "boot_seconds": BOOT / SCALE,
        "agent_register_seconds": REGISTER / SCALE,
        "mount_seconds": MOUNT / SCALE,
        "halt_delay_seconds": 0.1,
        "shutting_down_seconds": 0.2,
    }


def _service(endpoint: str, subnets: list[str], root: Path, s3_bucket: str = "") -> Any:
    """The real JobService on the capacity section's EC2 backend, with SendCommand's cadence
    at its default (that section shortens it); with `s3_bucket`, in S3 storage (no EFS)."""
    from awsjobs_lab.requests import LaunchDefaults
    from awsjobs_lab.service import JobService, ServiceOptions
    from awsjobs_lab.store import JobStore

    from .capacity import _backend

    backend = _backend(endpoint, subnets, root)
    backend.ssm_retry_seconds = 2.0
    backend.ssm_retry_max_seconds = 15.0
    if s3_bucket:
        backend.efs_file_system_id = ""
        backend.storage = "s3"
        backend.s3_bucket = s3_bucket
    options = ServiceOptions(defaults=LaunchDefaults(backend="ec2"))
    return JobService(JobStore(root.parent / "jobs.sqlite"), {"ec2": backend}, root, options)


async def _ec2(report: Report, root: Path, jobs: int) -> None:
    from tests.awssim.server import SimulatedAWS

    from .aws import moto_setup

    (root / "work").mkdir(parents=True, exist_ok=True)
    (root / "work" / "job.sh").write_text(f"sleep {SCRIPT / SCALE:g}\n")
    config = {"clock": _clock(), "worker": {"enabled": True, "efs_root": str(root)}}
    with SimulatedAWS(config) as sim:
        sim.reset()
        setup = await moto_setup(sim.endpoint_url)
        service = _service(sim.endpoint_url, setup["subnets"], root)
        await service.start()
        try:
            await service.create_job({"path": "work/job.sh"})  # warm-up: catalogue, prices
            await _until_done(service)
            sends_before = sim.record.calls["ssm:SendCommand"]
            registered: dict[str, float] = {}
            watcher = asyncio.ensure_future(_registrations(sim, registered))
            done = await _posted_jobs_done(service, jobs)
            watcher.cancel()
            figures = [_figures(j, registered, root) for j in done]
            sends = sim.record.calls["ssm:SendCommand"] - sends_before
        finally:
            await service.close()
    _ec2_rows(report, figures, sends)


async def _posted_jobs_done(service: Any, jobs: int) -> list[Any]:
    """POST `jobs` runs of work/job.sh, wait for every job to end; the POSTed ones."""
    posted = [await service.create_job({"path": "work/job.sh"}) for _ in range(jobs)]
    ours = {p.id for p in posted}
    return [j for j in await _until_done(service) if j.id in ours]


async def _ec2_s3(report: Report, root: Path, jobs: int) -> None:
    """The same jobs with storage "s3": no mount; the worker downloads the folder, streams its
    log and writes its outputs and exit code to the simulator's S3."""
    from tests.awssim.server import SimulatedAWS

    from .aws import moto_setup

    (root / "work").mkdir(parents=True, exist_ok=True)
    script = f'sleep {SCRIPT / SCALE:g}\necho done > "result-$AWSJOBS_JOB_ID.txt"\n'
    (root / "work" / "job.sh").write_text(script)
    config = {"clock": _clock(), "worker": {"enabled": True, "efs_root": None}}
    with SimulatedAWS(config) as sim:
        sim.reset()
        setup = await moto_setup(sim.endpoint_url)
        service = _service(sim.endpoint_url, setup["subnets"], root, s3_bucket=S3_BUCKET)
        async with _s3_client(sim.endpoint_url) as s3:
            await s3.create_bucket(Bucket=S3_BUCKET)
            await service.start()
            try:
                await service.create_job({"path": "work/job.sh"})  # warm-up
                await _until_done(service)
                written: dict[str, float] = {}
                watcher = asyncio.ensure_future(_exit_codes_written(s3, written))
                done = await _posted_jobs_done(service, jobs)
                watcher.cancel()
            finally:
                await service.close()
    interval = service.backends["ec2"].s3_log_interval_seconds
    _s3_row(report, [_s3_figures(j, written, root) for j in done], interval)


def _s3_client(endpoint: str) -> Any:
    from aiobotocore.session import get_session

    from .aws import REGION

    return get_session().create_client("s3", region_name=REGION, endpoint_url=endpoint)


async def _exit_codes_written(s3: Any, found: dict[str, float]) -> None:
    """When each job's `exit_code` object first appeared (S3's LastModified has whole seconds
    only), by job id: a look at the bucket every 50 ms."""
    paginator = s3.get_paginator("list_objects_v2")
    while True:
        async for page in paginator.paginate(Bucket=S3_BUCKET):
            for row in page.get("Contents", []) or []:
                key = PurePosixPath(row["Key"])
                if key.name == "exit_code" and key.parent.name not in found:
                    found[key.parent.name] = time.time()
        await asyncio.sleep(0.05)


def _s3_figures(job: Any, written: dict[str, float], root: Path) -> dict[str, float]:
    result = root / "work" / f"result-{job.id}.txt"  # the file the job wrote, brought back
    return {
        "ended_to_final": float(job.finished_at) - written.get(job.id, float("nan")),
        "succeeded": 1.0 if job.state.value == "succeeded" and result.exists() else 0.0,
    }


def _s3_row(report: Report, figures: list[dict[str, float]], interval: float) -> None:
    ended = [f["ended_to_final"] for f in figures]
    report.limit_row(
        SECTION,
        "command ended (exit code written to S3) → job reads final p50, S3 storage",
        p50(ended),
        5.0,
        unit="s",
        strict=False,
        note=f"max {max(ended):.2f} s; outputs brought back included; the log follower looks "
        f"every {interval:g} s (one ListObjectsV2 and one GetObject per job), the monitor at "
        f"the job files every 1 s; {sum(int(f['succeeded']) for f in figures)}/{len(figures)} "
        "succeeded with their output back",
    )


async def _registrations(sim: Any, found: dict[str, float]) -> None:
    """Each instance's agent registration time (the simulator's, on the wall clock), noted
    while the instance lives (a terminated one forgets it)."""
    offset = time.time() - time.monotonic()  # the simulator's times are monotonic
    while True:
        for iid, machine in list(sim.simulator.world.fleet.machines.items()):
            if machine.agent_online_at is not None and iid not in found:
                found[iid] = float(machine.agent_online_at) + offset
        await asyncio.sleep(0.05)


async def _until_done(service: Any) -> list[Any]:
    """Every job of the service once none is active (polled every 50 ms)."""
    while True:
        jobs, _ = await service.store.list_jobs(limit=500)
        if jobs and not any(j.is_active for j in jobs):
            return list(jobs)
        await asyncio.sleep(0.05)


def _entered(job: Any, phase: str) -> float | None:
    return next((t.at for t in job.history if t.phase == phase), None)


def _figures(job: Any, registrations: dict[str, float], root: Path) -> dict[str, float]:
    """One job's figures, in seconds of wall-clock time."""
    from awsjobs_lab.jobfiles import exit_code_path

    registered = registrations.get(job.instance_id, float("nan"))
    accepted = _entered(job, "preparing") or float("nan")
    booting = _entered(job, "booting") or float("nan")
    ended = exit_code_path(root, job.id).stat().st_mtime
    return {
        "registered_to_accepted": accepted - registered,
        "waiting_for_agent": accepted - booting,
        "ended_to_final": float(job.finished_at) - ended,
        "total": float(job.finished_at) - float(job.created_at),
        "succeeded": 1.0 if job.state.value == "succeeded" else 0.0,
    }


def _ec2_rows(report: Report, figures: list[dict[str, float]], sends: int) -> None:
    scaled = (
        f"AWS's delays ÷ {SCALE:g} (boot {BOOT / SCALE:g} s, registration "
        f"{REGISTER / SCALE:g} s, mount {MOUNT / SCALE:g} s), ours not scaled"
    )
    accepted = [f["registered_to_accepted"] for f in figures]
    report.limit_row(
        SECTION,
        f"agent registered → command accepted p50 ({len(figures)} jobs)",
        p50(accepted),
        2.0,
        unit="s",
        strict=False,
        note=f"max {max(accepted):.2f} s; ratio to AWS's registration "
        f"{p50(accepted) / (REGISTER / SCALE):.2f}; {scaled}",
    )
    waited = sum(f["waiting_for_agent"] for f in figures)
    per_two = (sends - len(figures)) / (waited / 2.0) if waited else float("nan")
    report.limit_row(
        SECTION,
        "SendCommand calls per launching job per 2 s, while its agent registers",
        per_two,
        1.0,
        unit="calls",
        strict=False,
        note=f"{sends} SendCommand for {len(figures)} jobs over {waited:.1f} job-seconds of "
        "waiting (one accepted each); after a minute, a DescribeInstances every 5th attempt, "
        "its pause doubled",
    )
    ended = [f["ended_to_final"] for f in figures]
    report.limit_row(
        SECTION,
        "command ended (exit code written) → job reads final p50, EFS",
        p50(ended),
        5.0,
        unit="s",
        strict=False,
        note=f"max {max(ended):.2f} s; monitor cycle 15 s, its look at the job files every 1 s "
        "(no AWS call until a job ended: one TerminateInstances)",
    )
    aws_share = (BOOT + REGISTER + MOUNT + SCRIPT) / SCALE
    totals = [f["total"] for f in figures]
    overhead = [t - aws_share for t in totals]
    report.limit_row(
        SECTION,
        f"a {SCRIPT:g} s script: POST → final minus boot + registration + mount + the script",
        p50(overhead),
        10.0,
        unit="s",
        strict=False,
        note=f"total p50 {p50(totals):.1f} s of which AWS and the script {aws_share:g} s "
        f"(ratio ours/AWS {p50(overhead) / aws_share:.2f}); "
        f"{sum(int(f['succeeded']) for f in figures)}/{len(figures)} succeeded; {scaled}",
    )


# -- local: the first notebook job after the server starts ----------------------------------


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "c1",
            "metadata": {},
            "outputs": [],
            "source": "print('hello')",
        }
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _local_first_job(
    report: Report, procs: Processes, base: Path, following: int, starts: int
) -> None:
    """`starts` times: a new server, its first notebook job, then `following` more; the row
    is the median start's ratio (one first job alone varies with the machine's moment).

    Each start is a server of its own (its own store and warm runner) for one user: the
    starts share the user's IPython and Jupyter data folders, as a restarted server does.
    The very first kernel in a home makes IPython's profile there (about 0.1 s, once ever):
    with a fresh home per start, every first job paid it, which no server start causes."""
    ratios: list[tuple[float, float, float]] = []  # (first ÷ following, first, following)
    user = {"IPYTHONDIR": str(base / "ipython"), "JUPYTER_DATA_DIR": str(base / "jupyter-data")}
    for number in range(starts):
        here = base / f"start-{number}"
        (here / "root").mkdir(parents=True, exist_ok=True)
        (here / "root" / "hello.ipynb").write_text(json.dumps(NOTEBOOK))
        server = start_ours(procs, here, env=user)
        client = server.client()  # the first POST goes out as soon as the server answers
        try:
            times = [_one_notebook(client) for _ in range(1 + following)]
        finally:
            client.close()
            procs.stop(server.proc)
        first, rest = times[0], statistics.median(times[1:])
        log(f"local notebook jobs: {', '.join(f'{t:.2f}' for t in times)} s")
        ratios.append((first / rest, first, rest))
    ratio, first, rest = median_item(ratios, lambda r: r[0])
    report.limit_row(
        LOCAL_SECTION,
        "first notebook job after the server starts ÷ the following ones (POST → final; "
        f"median of {starts} server starts)",
        ratio,
        1.2,
        unit="",
        strict=False,
        note=f"starts: {', '.join(f'{r[0]:.2f}' for r in ratios)}; the median start: first "
        f"{first:.2f} s, following median {rest:.2f} s ({following} jobs); the starts share "
        "the user's IPython and Jupyter data folders, as a restarted server does (the first "
        "start of the run makes IPython's profile); the warm runner is spawned when the "
        "extension is linked, before the server's web app is built; a first job that comes "
        "before it is ready waits for it",
    )


def _one_notebook(client: Any) -> float:
    started = time.monotonic()
    job = client.post("/awsjobs/api/jobs", {"path": "hello.ipynb"}).json()
    while True:
        state = client.get(f"/awsjobs/api/jobs/{job['id']}").json()["state"]
        if state not in ("pending", "launching", "running", "stopping"):
            return time.monotonic() - started
        time.sleep(0.02)
