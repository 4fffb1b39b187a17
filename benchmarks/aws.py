"""AWS targets of our server against moto on 127.0.0.1: calls per monitor cycle with 1, 50 and
500 running EC2 jobs, and launch overhead (POST → CreateFleet sent) with the catalogue cached.
(The AWS calls a capacity failure costs are the `capacity` section: `benchmarks.capacity`.)

moto runs in this process (ThreadedMotoServer, random port); our server is a subprocess whose
EC2 backend points at it, with dummy credentials. Calls are counted inside the server at the
aiobotocore client boundary by the probe (`benchmarks/probe.py`), which also times each monitor
cycle so calls can be assigned to cycles.

moto runs every SSM command to "Success" at once; here, as on AWS while a job runs, a command
stays "InProgress" (patched in moto's model), so jobs stay running and the monitor sees what it
would see in production: running instances and commands still in progress.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from pathlib import Path
from typing import Any

from .ours import DUMMY_AWS, start_ours
from .report import Report, Row
from .servers import Server, log
from .util import (
    Client,
    Processes,
    ms,
    p50,
    percentile,
    probe_reset,
    probe_stats,
    probe_stop,
    wait_until,
)

SECTION = "aws (ours, moto)"
REGION = "us-east-1"
# The defaults are a 15 s monitor interval and a 120 s per-job command check; both are scaled
# by the same factor so the run is short and every cycle sees what it would see with defaults.
SCALE = 10.0
MONITOR_INTERVAL = 15.0 / SCALE
COMMAND_CHECK_INTERVAL = 120.0 / SCALE
ACTIVE = "pending,launching,running,stopping"


def start_moto() -> tuple[Any, str]:
    os.environ.update({k: v for k, v in DUMMY_AWS.items() if k != "AWS_ENDPOINT_URL"})
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    from moto.server import ThreadedMotoServer
    from moto.ssm import models as ssm_models

    # moto bug (docs/aws-testing.md §5): SendCommand without Targets fans out to every instance of
    # the region, which makes each command cost O(instances). A command reaches its InstanceIds.
    original_targets = ssm_models.Command._get_instance_ids_from_targets

    def targets(self: Any) -> Any:
        return original_targets(self) if self.targets else []

    ssm_models.Command._get_instance_ids_from_targets = targets  # type: ignore[method-assign]
    original_invocation = ssm_models.Command.invocation_response

    def in_progress(self: Any, instance_id: str, plugin_name: str) -> dict[str, Any]:
        invocation: dict[str, Any] = original_invocation(self, instance_id, plugin_name)
        invocation.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1)
        self.status = self.status_details = "InProgress"
        return invocation

    ssm_models.Command.invocation_response = in_progress  # type: ignore[method-assign]
    _add_cancel_command()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"moto is listening on {host}, not 127.0.0.1")
    return server, f"http://127.0.0.1:{port}"


def _add_cancel_command() -> None:
    """moto has no SSM CancelCommand (HTTP 500, retried by botocore): the shim of
    docs/aws-testing.md §5, so a Stop costs what it costs on AWS."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.core.responses import ActionResult
    from moto.ssm.models import ssm_backends
    from moto.ssm.responses import SimpleSystemManagerResponse

    def cancel_command(self: Any) -> Any:
        backend = ssm_backends[DEFAULT_ACCOUNT_ID][self.region]
        command = backend.get_command_by_id(self._get_param("CommandId"))
        ids = self._get_param("InstanceIds") or command.instance_ids
        for invocation in command.invocations:
            if invocation["InstanceId"] in ids and invocation["Status"] in (
                "Pending",
                "InProgress",
                "Delayed",
            ):
                invocation.update(Status="Cancelled", StatusDetails="Cancelled")
        return ActionResult({})

    SimpleSystemManagerResponse.cancel_command = cancel_command  # type: ignore[attr-defined]


async def moto_setup(endpoint: str) -> dict[str, Any]:
    """Two default subnets (zones in order) and the workers' instance profile."""
    from aiobotocore.session import get_session

    session = get_session()
    async with (
        session.create_client("ec2", region_name=REGION, endpoint_url=endpoint) as ec2,
        session.create_client("iam", region_name=REGION, endpoint_url=endpoint) as iam,
    ):
        resp = await ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
        subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in resp["Subnets"]}
        await iam.create_instance_profile(InstanceProfileName="awsjobs-bench-worker")
    return {"subnets": [subnets[z] for z in sorted(subnets)][:2]}


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    moto, endpoint = start_moto()
    try:
        setup = asyncio.run(moto_setup(endpoint))
        base = tmp / "ours-aws"
        config = {
            "AWSJobs": {"default_backend": "ec2"},
            "EC2Backend": {
                "endpoint_url": endpoint,
                "pricing_endpoint_url": "http://127.0.0.1:9",  # moto has no Pricing API
                "region": REGION,
                "image_id": "ami-12c6146b",
                "subnet_ids": setup["subnets"],
                "efs_file_system_id": "fs-0123456789abcdef0",
                "instance_profile_name": "awsjobs-bench-worker",
                "owner": "bench",
                "cache_dir": str(base / "cache"),
                "monitor_interval_seconds": MONITOR_INTERVAL,
                "command_check_interval_seconds": COMMAND_CHECK_INTERVAL,
            },
        }
        server = start_ours(procs, base, config, env={"AWS_ENDPOINT_URL": endpoint})
        log(f"our server on 127.0.0.1:{server.port}, EC2 backend on moto {endpoint}")
        (server.root / "work").mkdir(exist_ok=True)
        (server.root / "work" / "job.sh").write_text("echo hello from EC2\n")
        client = server.client()
        report.notes.append(
            "aws: moto 127.0.0.1 in the benchmark's process; monitor interval 1.5 s and per-job "
            "command check 12 s (the defaults 15 s / 120 s divided by 10: the same checks per "
            "cycle); SSM commands kept InProgress as on AWS while a job runs; moto's missing "
            "CancelCommand added (docs/aws-testing.md §5); EC2 backend otherwise at its defaults"
        )
        try:
            launch_overhead(report, server, client, n=8 if quick else 30)
            monitor_calls(report, client, counts=(1, 10, 50) if quick else (1, 50, 500))
        finally:
            client.close()
            procs.stop(server.proc)
    finally:
        moto.stop()


def post_job(client: Client) -> str:
    return str(client.post("/awsjobs/api/jobs", {"path": "work/job.sh"}).json()["id"])


def wait_running(client: Client, job_ids: list[str], timeout: float) -> None:
    wanted = set(job_ids)

    def done() -> bool:
        for job_id in list(wanted):
            state = client.get(f"/awsjobs/api/jobs/{job_id}").json()["state"]
            if state == "running":
                wanted.discard(job_id)
            elif state != "pending" and state != "launching":
                raise RuntimeError(f"EC2 job {job_id} is {state}, not running")
        return not wanted

    wait_until(done, timeout=timeout, interval=0.5, what=f"{len(job_ids)} EC2 jobs to run")


def launch_overhead(report: Report, server: Server, client: Client, n: int) -> None:
    """POST → CreateFleet sent, one job at a time, after warm-up launches have filled the
    instance catalogue and price caches."""
    probe_reset(client)
    probe_stop(client)  # AWS calls are still recorded; the 5 ms tick would only add load
    warm = [post_job(client) for _ in range(2)]
    wait_running(client, warm, timeout=180)
    overheads: list[float] = []
    to_template: list[float] = []  # POST → the launch's first call, CreateLaunchTemplate
    ids = []
    for _ in range(n):
        sent = time.time()
        ids.append(post_job(client))
        # The probe stamps each call when it is sent: read them once the job runs. Polling
        # for them meanwhile would compete with moto, which answers from this process.
        wait_running(client, ids[-1:], timeout=60)
        calls = probe_stats(client, sent)["calls"]
        run_at = next((c[0] for c in calls if c[2] == "CreateFleet"), None)
        template_at = next((c[0] for c in calls if c[2] == "CreateLaunchTemplate"), None)
        if run_at is None or template_at is None:
            raise RuntimeError("a job ran without its CreateLaunchTemplate and CreateFleet calls")
        overheads.append(run_at - sent)
        to_template.append(template_at - sent)
    report.limit_row(
        SECTION,
        f"launch overhead p50, POST → CreateFleet sent ({n} launches, catalogue cached)",
        ms(p50(overheads)),
        50.0,
        note=(
            f"p90 {ms(percentile(overheads, 90)):.1f} ms; max {ms(max(overheads)):.1f} ms; "
            "it includes one AWS round trip (CreateFleet takes a launch template: "
            f"CreateLaunchTemplate, sent after p50 {ms(p50(to_template)):.1f} ms)"
        ),
    )
    # Stop them, so the monitor measurements start from exactly the jobs they launch.
    for job_id in warm + ids:
        client.post(f"/awsjobs/api/jobs/{job_id}/stop")

    def stopped() -> bool:
        return not client.get(f"/awsjobs/api/jobs?state={ACTIVE}&limit=500").json()["jobs"]

    wait_until(stopped, timeout=120, interval=0.5, what="the launch-overhead jobs to stop")


def monitor_calls(report: Report, client: Client, counts: tuple[int, ...]) -> None:
    running: list[str] = []
    for count in counts:
        new = [post_job(client) for _ in range(count - len(running))]
        started = time.monotonic()
        wait_running(client, new, timeout=600)
        running += new
        log(f"{count} EC2 jobs running (launches took {time.monotonic() - started:.1f} s)")
        # A window longer than the per-job command check interval, so checks are included,
        # and holding at least 3 whole cycles (a cycle over 500 instances is slow on moto).
        since = time.time()
        time.sleep(COMMAND_CHECK_INTERVAL * 1.5 + 2 * MONITOR_INTERVAL)
        deadline = time.monotonic() + 120
        while True:
            stats = probe_stats(client, since)
            cycles = [(c[0], c[1]) for c in stats["cycles"]]
            if len(cycles) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        durations = sorted(end - start for start, end in cycles)
        per_cycle: list[collections.Counter[str]] = []
        for start, end in cycles:
            ops = collections.Counter(c[2] for c in stats["calls"] if start <= c[0] <= end)
            per_cycle.append(ops)
        outside = sum(1 for c in stats["calls"] if not any(s <= c[0] <= e for s, e in cycles))
        if not per_cycle:
            report.missing(
                SECTION,
                f"AWS calls per monitor cycle, {count} running EC2 jobs",
                "≤ 4" if count <= 50 else "page sizes",
                "no monitor cycle was recorded",
            )
            continue
        worst = max(per_cycle, key=lambda c: sum(c.values()))
        worst_total = sum(worst.values())
        mean = sum(sum(c.values()) for c in per_cycle) / len(per_cycle)
        detail = ", ".join(f"{op} {n}" for op, n in sorted(worst.items()))
        note = (
            f"worst of {len(per_cycle)} cycles: {detail}; mean {mean:.1f}; "
            f"{outside} calls outside whole cycles; cycle p50 {p50(durations):.2f} s"
        )
        if count <= 50:
            report.limit_row(
                SECTION,
                f"AWS calls per monitor cycle, {count} running EC2 jobs (most in one cycle)",
                float(worst_total),
                4.0,
                unit="calls",
                strict=False,
                note=note,
            )
        else:
            # DescribeInstances pages at 1,000; everything else is a fixed budget per cycle.
            pages = -(-count // 1000)
            limit = pages + 3
            row = Row(
                SECTION,
                f"AWS calls per monitor cycle, {count} running EC2 jobs (most in one cycle)",
                "calls",
                float(worst_total),
                None,
                f"≤ {limit} ({pages} DescribeInstances page(s) + the 1-job budget of 3)",
                worst_total <= limit,
                note,
            )
            report.add(row)
