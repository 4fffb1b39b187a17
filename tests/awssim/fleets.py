"""CreateFleet `instant` as EC2 Fleet does it, where moto does not.

moto 5 serves CreateFleet, but its instant fleet launches the cheapest pool blindly (no capacity,
no quotas), drops most of the launch template (no InstanceInitiatedShutdownBehavior, no
metadata options, no block devices, no instance profile) and sends spot through persistent spot
requests. Here an instant fleet:

- expands its launch template configs into pools (template data merged with each override);
- orders the pools by its allocation strategy: `lowest-price` and `price-capacity-optimized` by
  the price the simulator knows (`capacity.prices`: "type@zone" or "type" → USD/hour), else in
  the order the request lists them (`prioritized`: by `Priority`);
- walks them, refusing a pool as RunInstances would (`capacity.rules`, vCPU quotas per group),
  each refusal an entry of the answer's `Errors`, until `TotalTargetCapacity` instances run;
- launches through moto's own RunInstances model, so the instance lives as any other (boot,
  worker, halts, consistency windows, the record);
- is idempotent by `ClientToken` (the same token answers the same fleet and launches nothing;
  other parameters: `IdempotentParameterMismatch`).

Every instant fleet is in `record.fleets` (strategy, market, pools, tags, errors, instances).
Other fleet types are left to moto.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from moto.core.responses import BaseResponse
from moto.ec2.responses.instances import BLOCK_DEVICE_MAPPING_TEMPLATE
from moto.ec2.utils import random_fleet_id

from .capacity import LaunchAsk
from .ec2 import Ec2Hooks, as_ec2, fingerprint_of, mismatch_answer
from .errors import MESSAGES, Answer, result_answer
from .world import PASS, World


@dataclass(frozen=True)
class Pool:
    """One (launch template, override) of the request: where an instance may be launched."""

    template: dict[str, Any]  # LaunchTemplateSpecification, as the answer echoes it
    override: dict[str, Any]
    data: dict[str, Any]  # the template's data with the override applied
    zone: str
    position: int  # order in the request

    @property
    def instance_type(self) -> str:
        return str(self.data.get("InstanceType") or "m1.small")

    def described(self) -> dict[str, Any]:
        return {"LaunchTemplateSpecification": self.template, "Overrides": self.override}


class FleetHooks:
    def __init__(self, world: World, ec2: Ec2Hooks) -> None:
        self.world = world
        self.ec2 = ec2
        # ClientToken → (answer, fingerprint of the rest of the request)
        self.tokens: dict[str, tuple[dict[str, Any], str]] = {}

    def table(self) -> dict[str, Callable[[BaseResponse, Callable[[], Answer]], Answer | None]]:
        return {"CreateFleet": self.create_fleet}

    def create_fleet(self, response: BaseResponse, original: Callable[[], Answer]) -> Answer | None:
        if response._get_param("Type") != "instant":
            return PASS
        token = response._get_param("ClientToken") or ""
        fingerprint = fingerprint_of(response)
        if token in self.tokens:
            answer, known = self.tokens[token]
            if known != fingerprint:
                return mismatch_answer(response)
            self.world.record.events["client-token-replay"] += 1
            return result_answer(response, answer)
        answer = self._fulfil(response)
        if token:
            self.tokens[token] = (answer, fingerprint)
        return result_answer(response, answer)

    def _fulfil(self, response: BaseResponse) -> dict[str, Any]:
        target = response._get_param("TargetCapacitySpecification", {}) or {}
        market = "spot" if target.get("DefaultTargetCapacityType") == "spot" else "on-demand"
        options = response._get_param("SpotOptions" if market == "spot" else "OnDemandOptions", {})
        strategy = str((options or {}).get("AllocationStrategy") or "lowest-price")
        wanted = int(target.get("TotalTargetCapacity") or 1)
        pools = self._ordered(self._pools(response), strategy)
        fleet_id = random_fleet_id()
        tags = _tags(response._get_param("TagSpecifications", []) or [])
        errors: list[dict[str, Any]] = []
        launched: list[dict[str, Any]] = []
        for pool in pools:
            if len(launched) >= wanted:
                break
            ask = LaunchAsk(pool.instance_type, pool.zone, market, 1)
            code = self.ec2.refused(ask, "CreateFleet")
            if code is not None:
                errors.append(_error(pool, market, code))
                continue
            instance_id = self._launch(response, pool, market, fleet_id, tags.get("instance", {}))
            launched.append(
                {
                    "LaunchTemplateAndOverrides": pool.described(),
                    "Lifecycle": market,
                    "InstanceIds": [instance_id],
                    "InstanceType": pool.instance_type,
                }
            )
        self.world.record.fleets.append(
            {
                "fleet_id": fleet_id,
                "market": market,
                "strategy": strategy,
                "pools": [{"instance_type": p.instance_type, "zone": p.zone} for p in pools],
                "tags": tags.get("fleet", {}),
                "errors": [e["ErrorCode"] for e in errors],
                "instances": [i for item in launched for i in item["InstanceIds"]],
            }
        )
        return {"FleetId": fleet_id, "Errors": errors, "Instances": launched}

    # -- the pools ---------------------------------------------------------------------------
    def _pools(self, response: BaseResponse) -> list[Pool]:
        backend = as_ec2(response).ec2_backend
        pools: list[Pool] = []
        for config in response._get_param("LaunchTemplateConfigs", []) or []:
            spec = dict(config.get("LaunchTemplateSpecification") or {})
            if "LaunchTemplateId" in spec:
                template = backend.get_launch_template(spec["LaunchTemplateId"])
            else:
                template = backend.get_launch_template_by_name(spec.get("LaunchTemplateName"))
            version = str(spec.get("Version") or template.default_version_number)
            if version == "$Latest":
                version = str(template.latest_version_number)
            elif version == "$Default":
                version = str(template.default_version_number)
            data = template.get_version(version).data
            echoed = {"LaunchTemplateId": template.id, "Version": version}
            for override in config.get("Overrides") or [{}]:
                merged = {**copy.deepcopy(data), **override}
                pools.append(
                    Pool(echoed, dict(override), merged, _zone(backend, merged), len(pools))
                )
        return pools

    def _ordered(self, pools: list[Pool], strategy: str) -> list[Pool]:
        if strategy == "prioritized":
            return sorted(pools, key=lambda p: (float(p.override.get("Priority", 1e9)), p.position))
        prices = self.world.config.capacity.prices

        def price(pool: Pool) -> float:
            for key in (f"{pool.instance_type}@{pool.zone}", pool.instance_type):
                if key in prices:
                    return float(prices[key])
            return float("inf")  # unknown: after the priced pools, in request order

        return sorted(pools, key=lambda p: (price(p), p.position))

    # -- one instance, through moto's RunInstances model --------------------------------------
    def _launch(
        self,
        response: BaseResponse,
        pool: Pool,
        market: str,
        fleet_id: str,
        fleet_instance_tags: Mapping[str, str],
    ) -> str:
        backend = as_ec2(response).ec2_backend
        data = pool.data
        tags = _tags(data.get("TagSpecifications", []))
        # AWS tags a fleet's instances with their fleet; moto's own fleet bookkeeping is not
        # involved (it knows nothing of this fleet), so no fleet_id is given to its model.
        tags["instance"] = {
            **tags.get("instance", {}),
            **fleet_instance_tags,
            "aws:ec2:fleet-id": fleet_id,
        }
        profile = data.get("IamInstanceProfile") or {}
        reservation = backend.run_instances(
            data.get("ImageId"),
            1,
            data.get("UserData"),
            [],
            instance_type=pool.instance_type,
            is_instance_type_default=False,
            placement=data.get("AvailabilityZone"),
            region_name=response.region,
            subnet_id=data.get("SubnetId"),
            key_name=data.get("KeyName"),
            security_group_ids=list(data.get("SecurityGroupIds") or []),
            tags=tags,
            instance_market_options="spot" if market == "spot" else {},
            instance_initiated_shutdown_behavior=data.get("InstanceInitiatedShutdownBehavior"),
            metadata_options=dict(data.get("MetadataOptions") or {}),
            block_device_mappings=_block_devices(data.get("BlockDeviceMappings") or []),
        )
        instance = reservation.instances[0]
        if profile:
            backend.associate_iam_instance_profile(
                instance_id=instance.id,
                iam_instance_profile_name=profile.get("Name"),
                iam_instance_profile_arn=profile.get("Arn"),
            )
        self.world.fleet.launched(instance, response.current_account, response.region, market)
        self.world.visibility.created_instance(instance.id, self.world.config.consistency)
        return str(instance.id)


def _zone(backend: Any, data: Mapping[str, Any]) -> str:
    zone = data.get("AvailabilityZone") or (data.get("Placement") or {}).get("AvailabilityZone")
    if not zone and data.get("SubnetId"):
        try:
            zone = backend.get_subnet(data["SubnetId"]).availability_zone
        except Exception:  # an unknown subnet: moto's own call answers for it
            zone = ""
    return str(zone or "")


def _tags(specifications: list[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """TagSpecifications → resource type → {key: value}."""
    out: dict[str, dict[str, str]] = {}
    for spec in specifications:
        found = out.setdefault(str(spec.get("ResourceType")), {})
        for tag in spec.get("Tags") or spec.get("Tag") or []:
            found[str(tag["Key"])] = str(tag.get("Value", ""))
    return out


def _block_devices(mappings: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The template's BlockDeviceMappings in the form moto's RunInstances model takes."""
    out = []
    for mapping in mappings:
        device: dict[str, Any] = copy.deepcopy(BLOCK_DEVICE_MAPPING_TEMPLATE)
        ebs = mapping.get("Ebs") or {}
        device["DeviceName"] = mapping.get("DeviceName")
        device["NoDevice"] = mapping.get("NoDevice")
        for key, default in (
            ("SnapshotId", None),
            ("VolumeSize", None),
            ("DeleteOnTermination", False),
            ("VolumeType", None),
            ("Iops", None),
            ("Encrypted", False),
            ("KmsKeyId", None),
        ):
            device["Ebs"][key] = ebs.get(key, default)
        out.append(device)
    return out


def _error(pool: Pool, market: str, code: str) -> dict[str, Any]:
    return {
        "LaunchTemplateAndOverrides": pool.described(),
        "Lifecycle": market,
        "ErrorCode": code,
        "ErrorMessage": MESSAGES.get(code, code),
    }
