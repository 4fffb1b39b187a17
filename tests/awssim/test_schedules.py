"""EventBridge Scheduler firing and the instances' metadata service (IMDSv2)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.awssim.imds import url_of
from tests.awssim.schedules import EXECUTION_ROLE_TRUST
from tests.awssim.server import SimulatedAWS, control
from tests.awssim.support import IMAGE, Clients, eventually, state_of


async def make_schedule(aws: Clients, *, state: str = "ENABLED", role: bool = True) -> None:
    """`awsjobs-t/nightly`: RunInstances of one tagged instance whose user data writes a file
    in its sandbox and halts (InstanceInitiatedShutdownBehavior=terminate)."""
    role_arn = "arn:aws:iam::123456789012:role/missing"
    if role:
        iam = await aws("iam")
        made = await iam.create_role(
            RoleName="scheduler", AssumeRolePolicyDocument=json.dumps(EXECUTION_ROLE_TRUST)
        )
        role_arn = made["Role"]["Arn"]
    script = "#!/bin/bash\necho fired > /var/lib/awsjobs/fired\nshutdown -h now\n"
    request = {
        "ImageId": IMAGE,
        "InstanceType": "m5.large",
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": base64.b64encode(script.encode()).decode(),
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "awsjobs:schedule", "Value": "n"}]}
        ],
    }
    scheduler = await aws("scheduler")
    await scheduler.create_schedule_group(Name="awsjobs-t")
    await scheduler.create_schedule(
        Name="nightly",
        GroupName="awsjobs-t",
        ScheduleExpression="cron(0 6 * * ? *)",
        FlexibleTimeWindow={"Mode": "OFF"},
        State=state,
        Target={
            "Arn": "arn:aws:scheduler:::aws-sdk:ec2:runInstances",
            "RoleArn": role_arn,
            "Input": json.dumps(request),
        },
    )


async def test_a_fired_schedule_launches_its_target_and_the_worker_runs_it(
    sim: SimulatedAWS, aws: Clients
) -> None:
    await make_schedule(aws)
    answer = await asyncio.to_thread(
        control, sim.endpoint_url, "fire-schedule/awsjobs-t/nightly", {}
    )
    [instance_id] = answer["instance_ids"]
    ec2 = await aws("ec2")

    async def terminated() -> bool:
        return await state_of(ec2, instance_id) == "terminated"

    await eventually(terminated)
    assert (sim.sandbox(instance_id) / "var/lib/awsjobs/fired").read_text() == "fired\n"
    described = (await ec2.describe_instances(InstanceIds=[instance_id]))["Reservations"]
    tags = described[0]["Instances"][0]["Tags"]
    assert {"Key": "awsjobs:schedule", "Value": "n"} in tags
    assert sim.record.events["schedule-fired"] == 1


@pytest.mark.parametrize(
    ("state", "role", "status"), [("DISABLED", True, 400), ("ENABLED", False, 400)]
)
async def test_what_aws_would_not_fire_is_refused(
    sim: SimulatedAWS, aws: Clients, state: str, role: bool, status: int
) -> None:
    await make_schedule(aws, state=state, role=role)
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(control, sim.endpoint_url, "fire-schedule/awsjobs-t/nightly", {})
    assert refused.value.code == status
    with pytest.raises(urllib.error.HTTPError) as unknown:
        await asyncio.to_thread(control, sim.endpoint_url, "fire-schedule/awsjobs-t/other", {})
    assert unknown.value.code == 404
    ec2 = await aws("ec2")
    assert (await ec2.describe_instances())["Reservations"] == []


def _imds(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code


async def test_the_metadata_service_answers_as_imdsv2(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure({"clock": {"boot_seconds": 0.0}})
    ec2 = await aws("ec2")
    made = await ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="m5.large")
    instance_id = made["Instances"][0]["InstanceId"]

    async def running() -> bool:
        return await state_of(ec2, instance_id) == "running"

    await eventually(running)
    base = url_of(sim.endpoint_url, instance_id)
    sandbox = sim.simulator.machine(instance_id).sandbox
    assert sandbox is not None and sandbox.env["AWSJOBS_IMDS_URL"] == base
    assert await asyncio.to_thread(_imds, f"{base}/meta-data/instance-id") == 401
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    token = await asyncio.to_thread(_imds, f"{base}/api/token", "PUT", ttl)
    with_token = {"X-aws-ec2-metadata-token": token}
    assert await asyncio.to_thread(_imds, f"{base}/meta-data/instance-id", "GET", with_token) == (
        instance_id
    )
    region = await asyncio.to_thread(_imds, f"{base}/meta-data/placement/region", "GET", with_token)
    assert region == "us-east-1"
    missing = await asyncio.to_thread(
        _imds, f"{base}/meta-data/spot/instance-action", "GET", with_token
    )
    assert missing == 404
