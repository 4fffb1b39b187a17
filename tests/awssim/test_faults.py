"""Throttling, server errors and lost answers, by action, count or seeded probability."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import Clients, eventually, launch, registered, state_of

LOST = (ConnectionClosedError, ReadTimeoutError, ConnectionError, OSError)


@pytest.mark.usefixtures("no_retry_delay")
async def test_a_throttling_burst_is_retried_through(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure(
        {
            "faults": [
                {
                    "service": "ec2",
                    "action": "DescribeInstances",
                    "error": "RequestLimitExceeded",
                    "count": 2,
                },
                {
                    "service": "ssm",
                    "action": "ListCommands",
                    "error": "ThrottlingException",
                    "count": 1,
                },
            ]
        }
    )
    ec2 = await aws("ec2", attempts=3)
    answer = await ec2.describe_instances()
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    ssm = await aws("ssm", attempts=2)
    assert (await ssm.list_commands())["ResponseMetadata"]["RetryAttempts"] == 1
    assert sim.record.faults["RequestLimitExceeded"] == 2
    assert sim.record.faults_by_action["ssm:ListCommands:ThrottlingException"] == 1


async def test_server_errors_carry_their_http_status(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure(
        {
            "faults": [
                {"action": "DescribeInstances", "error": "InternalError", "count": 1},
                {"action": "DescribeInstances", "error": "Unavailable", "count": 1},
                {"action": "DescribeInstances", "error": "RequestLimitExceeded", "count": 1},
            ]
        }
    )
    ec2 = await aws("ec2")
    seen = []
    for _ in range(3):
        with pytest.raises(ClientError) as error:
            await ec2.describe_instances()
        meta = error.value.response
        seen.append((meta["Error"]["Code"], meta["ResponseMetadata"]["HTTPStatusCode"]))
    assert seen == [("InternalError", 500), ("Unavailable", 503), ("RequestLimitExceeded", 503)]
    await ec2.describe_instances()  # every rule has used its count


async def test_probability_draws_repeat_with_the_same_seed(sim: SimulatedAWS, aws: Clients) -> None:
    rule = {"action": "DescribeAvailabilityZones", "error": "InternalError", "probability": 0.5}
    ec2 = await aws("ec2")

    async def pattern() -> list[bool]:
        outcome = []
        for _ in range(16):
            try:
                await ec2.describe_availability_zones()
                outcome.append(True)
            except ClientError:
                outcome.append(False)
        return outcome

    sim.configure({"seed": 7, "faults": [rule]})
    first = await pattern()
    sim.configure({"seed": 7, "faults": [rule]})
    assert await pattern() == first
    assert 0 < first.count(False) < 16


async def test_a_lost_run_instances_answer_then_a_retry_with_its_client_token(
    sim: SimulatedAWS, aws: Clients
) -> None:
    sim.configure({"faults": [{"action": "RunInstances", "error": "LostAnswer", "count": 1}]})
    ec2 = await aws("ec2")
    with pytest.raises(LOST):
        await launch(ec2, ClientToken="job-7")
    assert len(sim.record.instances) == 1  # applied although the answer was lost
    (launched,) = sim.record.instances
    assert await launch(ec2, ClientToken="job-7") == launched  # the retry launches nothing
    assert len(sim.record.instances) == 1
    assert sim.record.faults["LostAnswer"] == 1


async def test_a_lost_answer_after_a_delay_is_a_client_timeout(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # The answer is held far longer than the read timeout: the client must time out first
    # even when a loaded machine stalls its event loop for a while.
    sim.configure(
        {"faults": [{"action": "TerminateInstances", "error": "LostAnswer", "delay_seconds": 10}]}
    )
    ec2 = await aws("ec2", read_timeout=0.3)
    instance_id = await launch(ec2)
    with pytest.raises(ReadTimeoutError):
        await ec2.terminate_instances(InstanceIds=[instance_id])

    async def gone() -> bool:
        return await state_of(ec2, instance_id) == "terminated"

    await eventually(gone)  # applied


async def test_a_lost_send_command_answer_still_runs_the_command(
    sim: SimulatedAWS, aws: Clients
) -> None:
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    sim.configure({"faults": [{"action": "SendCommand", "error": "LostAnswer", "count": 1}]})
    with pytest.raises(LOST):
        await ssm.send_command(
            InstanceIds=[instance_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["echo ran"]},
        )
    commands = (await ssm.list_commands(InstanceId=instance_id))["Commands"]
    assert len(commands) == 1
