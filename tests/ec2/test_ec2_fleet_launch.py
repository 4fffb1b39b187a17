"""Capacity-aware launch: one instant EC2 Fleet over the pools of the ten cheapest types in every
configured zone (spot: price-capacity-optimized, on-demand: lowest-price), from a per-job launch
template. A pool without capacity costs at most one more AWS round trip, not a serial walk."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ec2_helpers import Recorder, make_job
from test_ec2_launch import _capture

LAUNCH_CALLS = ("RunInstances", "CreateFleet", "CreateTags", "CreateLaunchTemplate")


async def _count_calls(backend: Any) -> Counter[str]:
    """Every EC2 call the backend's client makes, by operation (at the client boundary, once
    per call: botocore's own retries aside)."""
    counted: Counter[str] = Counter()
    ec2 = await backend.clients.ec2()

    def count(model: Any, **_: Any) -> None:
        counted[model.name] += 1

    ec2.meta.events.register("before-call.ec2", count)
    return counted


def _tags(specs: list[dict[str, Any]], kind: str) -> dict[str, str]:
    for spec in specs:
        if spec["ResourceType"] == kind:
            return {t["Key"]: t["Value"] for t in spec["Tags"]}
    return {}


async def test_no_capacity_in_the_cheapest_pool_costs_at_most_one_more_call(
    make_backend, root, sim, aws
):
    backend = make_backend()
    calls = await _count_calls(backend)
    await backend.launch(make_job(root, "warm.py"), Recorder(make_job(root, "warm.py")))
    calls.clear()  # catalogue, subnets and image are cached now
    plain = make_job(root, "plain.py")
    await backend.launch(plain, Recorder(plain))
    baseline = Counter(calls)
    cheapest = plain.instance_type
    assert baseline["CreateFleet"] == 1 and baseline["RunInstances"] == 0

    # AWS has no capacity for the cheapest type anywhere: the fleet launches another pool in
    # the same call; the instance's price tag is then corrected in one CreateTags.
    sim.configure(
        {
            "capacity": {
                "rules": [{"error": "InsufficientInstanceCapacity", "instance_type": cheapest}]
            }
        }
    )
    calls.clear()
    job = make_job(root, "short.py")
    await backend.launch(job, Recorder(job))
    assert job.instance_type != cheapest
    assert calls["CreateFleet"] == 1
    extra = sum(calls[a] for a in LAUNCH_CALLS) - sum(baseline[a] for a in LAUNCH_CALLS)
    assert extra <= 1
    (fleet,) = [f for f in sim.record.fleets if f["instances"] == [job.instance_id]]
    assert "InsufficientInstanceCapacity" in fleet["errors"]
    instance = (await (await aws("ec2")).describe_instances(InstanceIds=[job.instance_id]))[
        "Reservations"
    ][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert float(tags["awsjobs:hourly-price"]) == job.hourly_price


async def test_on_demand_offers_ten_types_in_every_zone_at_the_lowest_price(
    make_backend, root, sim, subnets
):
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    backend = make_backend(subnet_ids=[subnets[z] for z in zones])
    sent = await _capture(backend, "CreateFleet")
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    (request,) = sent
    assert request["Type"] == "instant"
    assert request["OnDemandOptions"] == {"AllocationStrategy": "lowest-price"}
    assert "SpotOptions" not in request
    assert request["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "on-demand"
    overrides = request["LaunchTemplateConfigs"][0]["Overrides"]
    types = list(dict.fromkeys(o["InstanceType"] for o in overrides))
    assert len(types) == 10
    for name in types:  # each type in every configured zone
        assert {o["SubnetId"] for o in overrides if o["InstanceType"] == name} == {
            subnets[z] for z in zones
        }
    assert overrides[0]["InstanceType"] == job.instance_type  # the cheapest first
    assert sim.record.fleets[-1]["strategy"] == "lowest-price"


async def test_everything_is_tagged_at_creation_and_the_template_is_deleted(
    make_backend, root, sim, aws
):
    backend = make_backend()
    fleets = await _capture(backend, "CreateFleet")
    templates = await _capture(backend, "CreateLaunchTemplate")
    tagged_later = await _capture(backend, "CreateTags")
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    ours = {"awsjobs:managed": "true", "awsjobs:job-id": job.id, "awsjobs:owner": "tester"}
    (template,) = templates
    for kind in ("instance", "volume"):
        assert (
            ours.items() <= _tags(template["LaunchTemplateData"]["TagSpecifications"], kind).items()
        )
    assert ours.items() <= _tags(template["TagSpecifications"], "launch-template").items()
    assert ours.items() <= _tags(fleets[0]["TagSpecifications"], "fleet").items()
    assert tagged_later == []  # the cheapest pool launched: its tags were the template's
    # The simulator's record: the instance carried the job's tags from its launch on.
    life = sim.record.instances[job.instance_id]
    assert ours.items() <= life.tags.items()
    assert ours.items() <= sim.record.fleets[-1]["tags"].items()
    ec2 = await aws("ec2")
    assert (await ec2.describe_launch_templates())["LaunchTemplates"] == []


async def test_a_lost_template_answer_reuses_the_same_template(make_backend, root, sim):
    # CreateLaunchTemplate applied, its answer lost: botocore's retry finds the name taken;
    # the launch uses that template (same name: same content) and deletes it afterwards.
    sim.configure(
        {
            "faults": [
                {
                    "service": "ec2",
                    "action": "CreateLaunchTemplate",
                    "error": "LostAnswer",
                    "count": 1,
                }
            ]
        }
    )
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    assert job.instance_id
    assert sim.record.calls["ec2:CreateLaunchTemplate"] == 2
    assert sim.record.calls["ec2:DeleteLaunchTemplate"] == 1


async def test_a_lost_fleet_answer_is_repeated_with_its_token_and_leaks_nothing(
    make_backend, root, sim
):
    sim.configure(
        {"faults": [{"service": "ec2", "action": "CreateFleet", "error": "LostAnswer", "count": 6}]}
    )
    backend = make_backend()
    sent = await _capture(backend, "CreateFleet")
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    assert len({r["ClientToken"] for r in sent}) == 1  # every repeat with the recorded token
    assert sent[0]["ClientToken"] == job.handle["launch_attempt"]["client_token"]
    assert list(sim.record.instances) == [job.instance_id]  # one instance, the job's
    assert sim.record.events["client-token-replay"] >= 1


async def test_the_preview_says_what_one_launch_will_try(make_backend, subnets):
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    backend = make_backend(subnet_ids=[subnets[z] for z in zones])
    out = await backend.preview(memory_gib=4, cpus=2, spot=False)
    tried = out["tried"]
    assert tried["types"][0] == out["choice"]["instance_type"]
    assert tried["types"] == [c["instance_type"] for c in out["candidates"]]
    assert len(tried["types"]) == 10
    assert tried["zones"] == zones
    assert tried["pools"] == 30
    assert tried["strategy"] == "lowest-price" and tried["spot"] is False
    assert tried["from_price"] == out["choice"]["hourly_price"]
    spot = (await backend.preview(memory_gib=4, cpus=2, spot=True))["tried"]
    assert spot["strategy"] == "price-capacity-optimized" and spot["spot"] is True
