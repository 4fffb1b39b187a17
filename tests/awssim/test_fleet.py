"""CreateFleet `instant`: pools walked by strategy, capacity and quotas per pool, the launch
template honoured, tags at creation, ClientToken idempotency."""

from __future__ import annotations

import base64
from typing import Any

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import IMAGE, Clients, describe


async def _default_subnets(ec2: Any) -> dict[str, str]:
    """Zone → moto's default subnet there."""
    found = await ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    return {s["AvailabilityZone"]: s["SubnetId"] for s in found["Subnets"]}


async def _template(ec2: Any) -> str:
    made = await ec2.create_launch_template(
        LaunchTemplateName="awssim-fleet",
        LaunchTemplateData={
            "ImageId": IMAGE,
            "UserData": base64.b64encode(b"#!/bin/bash\ntrue\n").decode(),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3"}}
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "job", "Value": "j1"}]},
                {"ResourceType": "volume", "Tags": [{"Key": "job", "Value": "j1"}]},
            ],
        },
    )
    return str(made["LaunchTemplate"]["LaunchTemplateId"])


def _request(template_id: str, pools: list[tuple[str, str]], spot: bool) -> dict[str, Any]:
    market = "spot" if spot else "on-demand"
    request: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": "fleet-token-1",
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": market,
        },
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "1"},
                "Overrides": [{"InstanceType": t, "SubnetId": s} for t, s in pools],
            }
        ],
        "TagSpecifications": [{"ResourceType": "fleet", "Tags": [{"Key": "job", "Value": "j1"}]}],
    }
    if spot:
        request["SpotOptions"] = {"AllocationStrategy": "price-capacity-optimized"}
    else:
        request["OnDemandOptions"] = {"AllocationStrategy": "lowest-price"}
    return request


async def test_a_pool_without_capacity_is_an_error_and_the_next_pool_launches(
    sim: SimulatedAWS, aws: Clients
) -> None:
    sim.configure(
        {"capacity": {"rules": [{"error": "InsufficientInstanceCapacity", "zone": "us-east-1a"}]}}
    )
    ec2 = await aws("ec2")
    subnets = await _default_subnets(ec2)
    template_id = await _template(ec2)
    pools = [("m5.large", subnets["us-east-1a"]), ("m5.large", subnets["us-east-1b"])]
    answer = await ec2.create_fleet(**_request(template_id, pools, spot=False))

    (error,) = answer["Errors"]
    assert error["ErrorCode"] == "InsufficientInstanceCapacity"
    assert error["LaunchTemplateAndOverrides"]["Overrides"]["SubnetId"] == subnets["us-east-1a"]
    (launched,) = answer["Instances"]
    assert launched["Lifecycle"] == "on-demand"
    assert launched["LaunchTemplateAndOverrides"]["Overrides"]["SubnetId"] == subnets["us-east-1b"]
    (instance_id,) = launched["InstanceIds"]
    instance = await describe(ec2, instance_id)
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert {"Key": "job", "Value": "j1"} in instance["Tags"]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    behaviour = await ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    volumes = await ec2.describe_volumes(Filters=[{"Name": "tag:job", "Values": ["j1"]}])
    assert [v["Size"] for v in volumes["Volumes"]] == [30]

    (fleet,) = sim.record.fleets
    assert fleet["strategy"] == "lowest-price" and fleet["market"] == "on-demand"
    assert fleet["tags"] == {"job": "j1"}
    assert fleet["errors"] == ["InsufficientInstanceCapacity"]
    assert sim.record.faults_by_action["ec2:CreateFleet:InsufficientInstanceCapacity"] == 1

    # The same token: the same answer, nothing new launched.
    again = await ec2.create_fleet(**_request(template_id, pools, spot=False))
    assert again["FleetId"] == answer["FleetId"]
    assert again["Instances"][0]["InstanceIds"] == [instance_id]
    assert len(sim.record.instances) == 1
    assert sim.record.events["client-token-replay"] == 1


async def test_spot_pools_by_price_and_a_spot_quota_per_group(
    sim: SimulatedAWS, aws: Clients
) -> None:
    sim.configure(
        {
            "capacity": {
                "spot_vcpus": {"standard": 0},
                "prices": {"g4dn.xlarge@us-east-1b": 0.2, "g4dn.xlarge": 0.3},
            }
        }
    )
    ec2 = await aws("ec2")
    subnets = await _default_subnets(ec2)
    template_id = await _template(ec2)
    pools = [
        ("m5.large", subnets["us-east-1a"]),
        ("g4dn.xlarge", subnets["us-east-1a"]),
        ("g4dn.xlarge", subnets["us-east-1b"]),
    ]
    answer = await ec2.create_fleet(**_request(template_id, pools, spot=True))
    # Priced pools first (the cheapest zone wins); the standard spot quota refuses m5.
    (launched,) = answer["Instances"]
    assert launched["Lifecycle"] == "spot" and launched["InstanceType"] == "g4dn.xlarge"
    instance = await describe(ec2, launched["InstanceIds"][0])
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert instance["InstanceLifecycle"] == "spot"
    assert answer["Errors"] == []  # a pool was found before the refused one was tried
    assert sim.record.fleets[0]["strategy"] == "price-capacity-optimized"
