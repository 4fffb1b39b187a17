"""The worker's `aws` shim: the AWS CLI v2 subset of the app's S3-mode command, on the
simulator's S3; anything else refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import Clients, eventually, launch, registered, state_of
from tests.awssim.test_worker import reaches, run_job

BUCKET = "jobs-bucket"

BOOT = """#!/bin/bash
mkdir -p /run/awsjobs && touch /run/awsjobs/ready
"""

# Shaped like the app's S3-mode command: the folder down, the job, a log part from stdin,
# the new files up, the exit code.
COMMAND = """set -u
work=/var/lib/awsjobs/work/j1
mkdir -p "$work" /var/lib/awsjobs/state
aws s3 cp --only-show-errors --recursive s3://{bucket}/in/ "$work" || exit 90
touch /var/lib/awsjobs/state/marker
cd "$work"
( {job} ) > /var/lib/awsjobs/state/log 2>&1
rc=$?
aws s3 cp --only-show-errors - s3://{bucket}/log/01-000001 < /var/lib/awsjobs/state/log
mkdir -p /var/lib/awsjobs/state/out
find . -type f -newer /var/lib/awsjobs/state/marker \\
  -exec cp --parents {{}} /var/lib/awsjobs/state/out \\;
aws s3 cp --only-show-errors --recursive /var/lib/awsjobs/state/out s3://{bucket}/out/
printf '%s\\n' "$rc" | aws s3 cp - s3://{bucket}/exit_code
shutdown -h now 'awsjobs: job finished'
"""


async def bucket_with_inputs(aws: Clients) -> Any:
    s3 = await aws("s3")
    await s3.create_bucket(Bucket=BUCKET)
    await s3.put_object(Bucket=BUCKET, Key="in/data/numbers.csv", Body=b"1\n2\n3\n")
    await s3.put_object(Bucket=BUCKET, Key="in/run.sh", Body=b"echo ran\n")
    return s3


async def run_on_a_worker(sim: SimulatedAWS, aws: Clients, job: str) -> tuple[Any, str]:
    """A new instance (terminated when it halts) running COMMAND with `job`: its EC2 client
    and id."""
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2, UserData=BOOT, InstanceInitiatedShutdownBehavior="terminate")
    await registered(sim, instance_id)
    await run_job(ssm, instance_id, COMMAND.format(bucket=BUCKET, job=job).splitlines())
    return ec2, instance_id


async def body(s3: Any, key: str) -> bytes:
    answer = await s3.get_object(Bucket=BUCKET, Key=key)
    async with answer["Body"] as stream:
        data: bytes = await stream.read()
    return data


async def test_a_job_downloads_its_folder_and_uploads_log_outputs_and_exit_code(
    sim: SimulatedAWS, aws: Clients
) -> None:
    s3 = await bucket_with_inputs(aws)
    job = "bash run.sh; wc -l < data/numbers.csv > data/count.txt; exit 3"
    ec2, instance_id = await run_on_a_worker(sim, aws, job)
    await reaches(ec2, instance_id, "terminated")
    assert await body(s3, "exit_code") == b"3\n"
    assert await body(s3, "log/01-000001") == b"ran\n"
    assert (await body(s3, "out/data/count.txt")).strip() == b"3"
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix="out/")
    assert [o["Key"] for o in listed["Contents"]] == ["out/data/count.txt"]  # only what changed
    work = sim.sandbox(instance_id) / "var/lib/awsjobs/work/j1"  # redirected into the sandbox
    assert (work / "data" / "numbers.csv").read_bytes() == b"1\n2\n3\n"
    calls = sim.state()["instances"][0]["shim_calls"]
    assert any(c.startswith("aws s3 cp --only-show-errors --recursive s3://") for c in calls)


def shim(sim: SimulatedAWS, sandbox: Path, *args: str, stdin: bytes = b"") -> Any:
    env = dict(os.environ, AWS_ENDPOINT_URL=sim.endpoint_url, AWSSIM_SANDBOX=str(sandbox))
    return subprocess.run(
        [sys.executable, "-m", "tests.awssim.aws_shim", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=Path(__file__).parents[2],
        check=False,
    )


async def test_copies_to_and_from_s3_as_the_cli_names_them(
    sim: SimulatedAWS, aws: Clients, tmp_path: Path
) -> None:
    s3 = await bucket_with_inputs(aws)
    (tmp_path / "report.txt").write_text("hello")
    assert (
        shim(
            sim, tmp_path, "s3", "cp", str(tmp_path / "report.txt"), f"s3://{BUCKET}/x/"
        ).returncode
        == 0
    )
    assert await body(s3, "x/report.txt") == b"hello"  # a key ending in '/' keeps the name
    out = shim(sim, tmp_path, "s3", "cp", f"s3://{BUCKET}/x/report.txt", "-")
    assert out.stdout == b"hello"
    assert (
        shim(sim, tmp_path, "s3", "cp", f"s3://{BUCKET}/in/run.sh", str(tmp_path)).returncode == 0
    )
    assert (tmp_path / "run.sh").read_bytes() == b"echo ran\n"
    missing = shim(sim, tmp_path, "s3", "cp", f"s3://{BUCKET}/nothing", str(tmp_path / "n"))
    assert missing.returncode == 1 and b"aws (simulated)" in missing.stderr


async def test_refuses_what_it_does_not_implement(
    sim: SimulatedAWS, aws: Clients, tmp_path: Path
) -> None:
    await bucket_with_inputs(aws)
    for args in (
        ["s3", "sync", str(tmp_path), f"s3://{BUCKET}/out/"],
        ["s3", "cp", "--sse", "aws:kms", str(tmp_path), f"s3://{BUCKET}/k"],
        ["s3", "cp", "--recursive", "-", f"s3://{BUCKET}/k"],
        ["s3api", "put-object", "--bucket", BUCKET, "--key", "k"],
        ["s3", "cp", f"s3://{BUCKET}/in/run.sh", f"s3://{BUCKET}/copy"],
    ):
        answer = shim(sim, tmp_path, *args)
        assert answer.returncode == 2, args
        assert b"aws (simulated)" in answer.stderr


async def test_s3_upload_dies_halts_the_worker_mid_upload(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure({"worker": {"s3_upload_dies": True}})
    s3 = await bucket_with_inputs(aws)
    ec2, instance_id = await run_on_a_worker(
        sim, aws, "echo a > a.txt; echo b > b.txt; echo c > c.txt"
    )

    async def gone() -> bool:
        return await state_of(ec2, instance_id) == "terminated"

    await eventually(gone)
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix="out/")
    assert len(listed.get("Contents", [])) == 1  # one file made it, then the worker died
    assert "exit_code" not in {
        o["Key"] for o in (await s3.list_objects_v2(Bucket=BUCKET))["Contents"]
    }
