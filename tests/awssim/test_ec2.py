"""EC2 switches: consistency windows, ClientToken idempotency, capacity and quotas, lifecycle."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import Clients, describe, eventually, launch, state_of


def code_of(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


async def test_a_new_instance_is_not_found_then_unlisted_then_visible(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # Each "not yet" is checked under a window no loaded machine outruns (600 s); the windows
    # ending by themselves, with short ones that are waited for. Windows are set per instance
    # at its launch.
    sim.configure(
        {"consistency": {"instance_not_found_seconds": 600, "instance_unlisted_seconds": 600}}
    )
    ec2 = await aws("ec2")
    instance_id = await launch(ec2)
    for call in (
        ec2.describe_instances(InstanceIds=[instance_id]),
        ec2.terminate_instances(InstanceIds=[instance_id]),
        ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "a", "Value": "b"}]),
    ):
        with pytest.raises(ClientError) as error:
            await call
        assert code_of(error) == "InvalidInstanceID.NotFound"
        assert instance_id in str(error.value)
    listed = await ec2.describe_instances(Filters=[{"Name": "instance-type", "Values": ["*"]}])
    assert listed["Reservations"] == []

    async def found(iid: str) -> bool:
        try:
            return bool(await describe(ec2, iid))
        except ClientError:
            return False

    async def listed_ids() -> list[str]:
        listed = await ec2.describe_instances()
        return [i["InstanceId"] for r in listed["Reservations"] for i in r["Instances"]]

    sim.configure({"consistency": {"instance_not_found_seconds": 0.5}})
    unlisted = await launch(ec2)
    await eventually(lambda: found(unlisted))
    assert await listed_ids() == []  # found by id, but not yet listed
    sim.configure({"consistency": {"instance_unlisted_seconds": 1.0}})
    visible = await launch(ec2)
    assert await eventually(listed_ids) == [visible]  # the others' windows still run
    assert sim.record.faults["InvalidInstanceID.NotFound"] >= 3


async def test_settle_ends_the_windows_of_the_named_ids_only(
    sim: SimulatedAWS, aws: Clients
) -> None:
    sim.configure(
        {"consistency": {"instance_not_found_seconds": 600, "instance_unlisted_seconds": 600}}
    )
    ec2 = await aws("ec2")
    settled, hidden = await launch(ec2), await launch(ec2)
    sim.settle(settled)
    assert await describe(ec2, settled)
    with pytest.raises(ClientError):
        await describe(ec2, hidden)
    listed = await ec2.describe_instances()
    assert [i["InstanceId"] for r in listed["Reservations"] for i in r["Instances"]] == [settled]


async def test_a_new_image_is_not_found_for_a_while_and_create_image_reboots(
    sim: SimulatedAWS, aws: Clients
) -> None:
    # Hidden under a window no loaded machine outruns; the window ending by itself is seen
    # with a short one, on a second image.
    sim.configure({"consistency": {"image_not_found_seconds": 600}})
    ec2 = await aws("ec2")
    instance_id = await launch(ec2)
    await eventually(lambda: _is(ec2, instance_id, "running"))
    image_id = (await ec2.create_image(InstanceId=instance_id, Name="built"))["ImageId"]
    with pytest.raises(ClientError) as error:
        await ec2.describe_images(ImageIds=[image_id])
    assert code_of(error) == "InvalidAMIID.NotFound"
    with pytest.raises(ClientError) as error:
        await ec2.create_tags(Resources=[image_id], Tags=[{"Key": "a", "Value": "b"}])
    assert code_of(error) == "InvalidAMIID.NotFound"
    assert image_id not in {i["ImageId"] for i in (await ec2.describe_images())["Images"]}
    assert sim.record.events["reboot"] == 1  # CreateImage without NoReboot reboots

    sim.configure({"consistency": {"image_not_found_seconds": 1.0}})
    made = await ec2.create_image(InstanceId=instance_id, Name="again", NoReboot=True)

    async def visible() -> bool:
        try:
            return bool((await ec2.describe_images(ImageIds=[made["ImageId"]]))["Images"])
        except ClientError:
            return False

    await eventually(visible)
    assert sim.record.events["reboot"] == 1


async def _is(ec2: object, instance_id: str, state: str) -> bool:
    return await state_of(ec2, instance_id) == state


async def test_client_token_returns_the_same_instance(sim: SimulatedAWS, aws: Clients) -> None:
    ec2 = await aws("ec2")
    first = await launch(ec2, ClientToken="job-1")
    again = await launch(ec2, ClientToken="job-1")
    other = await launch(ec2, ClientToken="job-2")
    assert again == first
    assert other != first
    with pytest.raises(ClientError) as error:
        await launch(ec2, ClientToken="job-1", InstanceType="c5.large")
    assert code_of(error) == "IdempotentParameterMismatch"
    assert len(sim.record.instances) == 2


async def test_the_instance_boots_pending_then_running(sim: SimulatedAWS, aws: Clients) -> None:
    # Pending is checked under a boot no loaded machine outruns; the boot ending, with a short
    # one (the delay is set per instance at its launch).
    sim.configure({"clock": {"boot_seconds": 600}})
    ec2 = await aws("ec2")
    slow = await launch(ec2)
    assert await state_of(ec2, slow) == "pending"
    sim.configure({"clock": {"boot_seconds": 0.5}})
    instance_id = await launch(ec2)
    await eventually(lambda: _is(ec2, instance_id, "running"))
    assert await state_of(ec2, slow) == "pending"


async def test_capacity_rules_by_type_zone_and_market(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure(
        {
            "capacity": {
                "rules": [
                    {
                        "error": "InsufficientInstanceCapacity",
                        "instance_type": "m5.*",
                        "zone": "us-east-1a",
                    },
                    {"error": "SpotMaxPriceTooLow", "instance_type": "c5.large", "market": "spot"},
                    {"error": "Unsupported", "instance_type": "p4d.24xlarge"},
                ]
            }
        }
    )
    ec2 = await aws("ec2")
    spot = {"InstanceMarketOptions": {"MarketType": "spot"}}
    with pytest.raises(ClientError) as error:
        await launch(ec2, Placement={"AvailabilityZone": "us-east-1a"})
    assert code_of(error) == "InsufficientInstanceCapacity"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    await launch(ec2, Placement={"AvailabilityZone": "us-east-1b"})
    with pytest.raises(ClientError) as error:
        await launch(ec2, InstanceType="c5.large", **spot)
    assert code_of(error) == "SpotMaxPriceTooLow"
    await launch(ec2, InstanceType="c5.large")  # on-demand is fine
    with pytest.raises(ClientError) as error:
        await launch(ec2, InstanceType="p4d.24xlarge")
    assert code_of(error) == "Unsupported"


async def test_vcpu_budgets_per_quota_group_and_market(sim: SimulatedAWS, aws: Clients) -> None:
    sim.configure(
        {"capacity": {"on_demand_vcpus": {"standard": 4, "G": 4}, "spot_vcpus": {"G": 0}}}
    )
    ec2 = await aws("ec2")
    first = await launch(ec2)  # m5.large: 2 vCPUs
    await launch(ec2)
    with pytest.raises(ClientError) as error:
        await launch(ec2)
    assert code_of(error) == "VcpuLimitExceeded"
    await launch(ec2, InstanceType="g4dn.xlarge")  # 4 vCPUs in the G group: its own budget
    with pytest.raises(ClientError) as error:
        await launch(ec2, InstanceType="g4dn.xlarge", InstanceMarketOptions={"MarketType": "spot"})
    assert code_of(error) == "MaxSpotInstanceCountExceeded"
    await ec2.terminate_instances(InstanceIds=[first])
    await eventually(lambda: _is(ec2, first, "terminated"))
    await launch(ec2)  # the terminated instance's vCPUs are free again


async def test_spot_interruption_notice_then_termination(sim: SimulatedAWS, aws: Clients) -> None:
    # Running during a notice no loaded machine outruns; the notice ending, with a short one
    # on a second instance (the delay is set at the interruption).
    sim.configure({"clock": {"spot_notice_seconds": 600}})
    ec2 = await aws("ec2")
    spot = {"InstanceMarketOptions": {"MarketType": "spot"}}
    noticed = await launch(ec2, **spot)
    await eventually(lambda: _is(ec2, noticed, "running"))
    sim.interrupt_spot(noticed)
    notice = sim.sandbox(noticed) / "meta-data" / "spot" / "instance-action"
    assert '"action": "terminate"' in notice.read_text()
    assert await state_of(ec2, noticed) == "running"  # during the notice
    sim.configure({"clock": {"spot_notice_seconds": 0.5}})
    instance_id = await launch(ec2, **spot)
    await eventually(lambda: _is(ec2, instance_id, "running"))
    sim.interrupt_spot(instance_id)
    await eventually(lambda: _is(ec2, instance_id, "terminated"))
    reason = (await describe(ec2, instance_id))["StateReason"]
    assert reason["Code"] == "Server.SpotInstanceTermination"
    with pytest.raises(ValueError):
        sim.interrupt_spot(await launch(ec2))  # on-demand instances are not interrupted


async def test_termination_by_someone_else(sim: SimulatedAWS, aws: Clients) -> None:
    # Shutting down for longer than a loaded machine takes to look; the end, with a short
    # delay on a second instance (the delay is set at the termination).
    sim.configure({"clock": {"shutting_down_seconds": 600}})
    ec2 = await aws("ec2")
    slow = await launch(ec2)
    await eventually(lambda: _is(ec2, slow, "running"))
    sim.terminate(slow)
    assert await state_of(ec2, slow) == "shutting-down"
    sim.configure({"clock": {"shutting_down_seconds": 0.5}})
    started = time.monotonic()
    instance_id = await launch(ec2)
    await eventually(lambda: _is(ec2, instance_id, "running"))
    sim.terminate(instance_id)
    await eventually(lambda: _is(ec2, instance_id, "terminated"))
    described = await describe(ec2, instance_id)
    assert described["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    life = sim.record.instances[instance_id]
    assert life.terminated_at is not None
    assert 0 < life.seconds() <= time.monotonic() - started  # billed from launch to the end
