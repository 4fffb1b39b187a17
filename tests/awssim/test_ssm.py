"""SSM as on AWS: late registration, statuses and their exact strings, the timeout ceiling,
no fan-out, ListCommandInvocations and CancelCommand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import Clients, eventually, launch, registered


async def send(ssm: Any, instance_id: str, *lines: str, **params: Any) -> str:
    parameters = {"commands": list(lines)}
    parameters.update(params.pop("extra", {}))
    answer = await ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters=parameters,
        **params,
    )
    return str(answer["Command"]["CommandId"])


async def invocation(ssm: Any, command_id: str, instance_id: str) -> dict[str, Any]:
    return dict(await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id))


async def ends_as(ssm: Any, command_id: str, instance_id: str, details: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        answer = await invocation(ssm, command_id, instance_id)
        return answer if answer["StatusDetails"] == details else None

    result: dict[str, Any] = await eventually(check)
    return result


async def test_send_command_waits_for_the_agent_to_register(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # Refused under a registration no loaded machine outruns; the registration coming, with a
    # short one on a second instance (the delay is set at each boot).
    sim.configure({"clock": {"agent_register_seconds": 600}})
    ec2, ssm = await aws("ec2"), await aws("ssm")
    unregistered = await launch(ec2)
    with pytest.raises(ClientError) as error:
        await send(ssm, unregistered, "true")
    assert error.value.response["Error"]["Code"] == "InvalidInstanceId"
    info = await ssm.describe_instance_information()
    assert info["InstanceInformationList"] == []
    sim.configure({"clock": {"agent_register_seconds": 0.5}})
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    info = await ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )
    assert [(i["InstanceId"], i["PingStatus"]) for i in info["InstanceInformationList"]] == [
        (instance_id, "Online")
    ]
    command_id = await send(ssm, instance_id, "echo hello")
    answer = await ends_as(ssm, command_id, instance_id, "Success")
    assert (answer["Status"], answer["ResponseCode"]) == ("Success", 0)
    assert answer["StandardOutputContent"] == "hello\n"


async def test_a_command_goes_only_to_the_named_instance(sim: SimulatedAWS, aws: Clients) -> None:
    ec2, ssm = await aws("ec2"), await aws("ssm")
    first, second = await launch(ec2), await launch(ec2)
    await registered(sim, first)
    command_id = await send(ssm, first, "true")
    listed = await ssm.list_command_invocations(CommandId=command_id)
    assert [i["InstanceId"] for i in listed["CommandInvocations"]] == [first]
    assert (await ssm.list_commands(InstanceId=second))["Commands"] == []


async def test_the_execution_timeout_ceiling(sim: SimulatedAWS, aws: Clients) -> None:
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    with pytest.raises(ClientError) as error:
        await send(ssm, instance_id, "true", extra={"executionTimeout": ["172801"]})
    assert error.value.response["Error"]["Code"] == "InvalidParameters"
    await send(ssm, instance_id, "true", extra={"executionTimeout": ["172800"]})


async def test_failed_and_execution_timed_out(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure({"clock": {"ssm_timeout_scale": 0.01}})  # executionTimeout 60 → 0.6 s
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    failed = await send(ssm, instance_id, "echo oops >&2", "exit 3")
    answer = await ends_as(ssm, failed, instance_id, "Failed")
    assert (answer["Status"], answer["ResponseCode"]) == ("Failed", 3)
    assert answer["StandardErrorContent"] == "oops\n"
    slow = await send(ssm, instance_id, "sleep 30", extra={"executionTimeout": ["60"]})
    answer = await ends_as(ssm, slow, instance_id, "Execution Timed Out")
    assert answer["Status"] == "TimedOut"


async def test_delivery_timed_out_and_undeliverable(sim: SimulatedAWS, aws: Clients) -> None:
    """A reboot takes the agent offline: the command waits Pending, then times out; one
    still pending when the instance is terminated is Undeliverable."""
    # The reboot, and the delivery timeout of the command seen Pending, last longer than a
    # loaded machine takes over the whole test.
    sim.configure({"clock": {"ssm_timeout_scale": 0.02, "reboot_seconds": 600}})
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    sim.reboot(instance_id)
    lost = await send(ssm, instance_id, "true", TimeoutSeconds=30000)  # 600 s here
    assert (await invocation(ssm, lost, instance_id))["Status"] == "Pending"
    late = await send(ssm, instance_id, "true", TimeoutSeconds=50)  # 1 s here
    answer = await ends_as(ssm, late, instance_id, "Delivery Timed Out")
    assert answer["Status"] == "TimedOut"
    info = await ssm.describe_instance_information()
    assert info["InstanceInformationList"][0]["PingStatus"] == "ConnectionLost"
    await ec2.terminate_instances(InstanceIds=[instance_id])
    answer = await ends_as(ssm, lost, instance_id, "Undeliverable")
    assert answer["Status"] == "Failed"


async def test_cancel_command_kills_the_command(sim: SimulatedAWS, aws: Clients) -> None:
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    marker, gate = sim.sandbox(instance_id) / "still-running", sim.sandbox(instance_id) / "go"
    # It waits for `gate` (not a sleep that a slow cancel could outlast), then leaves a marker.
    command_id = await send(
        ssm, instance_id, f"while [ ! -e {gate} ]; do sleep 0.1; done", f"touch {marker}"
    )
    await ends_as(ssm, command_id, instance_id, "InProgress")
    await ssm.cancel_command(CommandId=command_id)
    answer = await ends_as(ssm, command_id, instance_id, "Cancelled")
    assert answer["Status"] == "Cancelled"
    listed = await ssm.list_command_invocations(CommandId=command_id, Details=True)
    (row,) = listed["CommandInvocations"]
    assert row["Status"] == "Cancelled"
    assert row["CommandPlugins"][0]["Name"] == "aws:runShellScript"
    gate.touch()
    await asyncio.sleep(1.5)
    assert not marker.exists()  # the process group was killed


async def test_invocations_take_a_while_to_appear_and_can_be_forced(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # The window is long and ended by hand (sim.settle): a short one races a loaded machine.
    sim.configure({"consistency": {"invocation_not_found_seconds": 600}})
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    command_id = await send(ssm, instance_id, "sleep 5")
    with pytest.raises(ClientError) as error:
        await invocation(ssm, command_id, instance_id)
    assert error.value.response["Error"]["Code"] == "InvocationDoesNotExist"
    sim.force_invocation(command_id, instance_id, "Terminated")
    sim.settle(command_id)
    answer = await ends_as(ssm, command_id, instance_id, "Terminated")
    assert answer["Status"] == "Cancelled"


async def test_commands_lead_their_group_run_side_by_side_and_cancel_is_sigkill(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # What a graceful stop relies on, as the agent does it on Linux: the command's shell leads
    # its own process group, a second command runs while the first does (and may signal it),
    # and CancelCommand kills the group with SIGKILL (a TERM trap never runs).
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2)
    await registered(sim, instance_id)
    box = sim.sandbox(instance_id)
    trapping = [
        f"trap 'touch {box}/$1-trapped; exit 3' TERM",
        f"echo \"$$ $(ps -o pgid= -p $$ | tr -d ' ')\" > {box}/$1-pid",
        "while true; do sleep 0.1; done",
    ]
    first = await send(ssm, instance_id, "set -- a", *trapping)
    await appears(box / "a-pid")
    pid, group = (box / "a-pid").read_text().split()
    assert pid == group  # the command's shell leads its group
    signal = await send(ssm, instance_id, f"kill -TERM -- -{group}")
    await ends_as(ssm, signal, instance_id, "Success")
    answer = await ends_as(ssm, first, instance_id, "Failed")
    assert answer["ResponseCode"] == 3 and (box / "a-trapped").exists()
    cancelled = await send(ssm, instance_id, "set -- b", *trapping)
    await appears(box / "b-pid")
    await ssm.cancel_command(CommandId=cancelled)
    await ends_as(ssm, cancelled, instance_id, "Cancelled")
    await asyncio.sleep(0.5)
    assert not (box / "b-trapped").exists()  # SIGKILL: no trap ran


async def appears(path: Path) -> None:
    async def exists() -> bool:
        return await asyncio.to_thread(path.exists)

    await eventually(exists)
