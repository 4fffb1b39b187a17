"""One launch over many pools: EC2 Fleet (`CreateFleet`, `Type=instant`) from a per-job launch
template, as Karpenter launches nodes.

- **Pools**: every (instance type, subnet) the launch offers, each an override of the template.
  AWS picks the pool: `price-capacity-optimized` for spot (the cheapest among the pools with the
  most spare capacity, AWS's recommendation for interruption-sensitive work), `lowest-price` for
  on-demand. A pool without capacity is skipped inside the call and listed in the answer's
  `Errors`; the instance comes from another pool in the same round trip.
- **The launch template** holds what RunInstances was given apart from the pool (image, boot
  script, shutdown behaviour, metadata options, root volume, profile, security groups, key) and
  the job's tags for the instance and its volume. It is per job (the boot script carries the
  job's id and deadline), created just before the fleet and deleted right after its answer.
  Its name is derived from its content, so a repeated creation (a lost answer) finds the same
  template instead of making a second one. One left by a server killed before its deletion is
  deleted by the sweep (`aws.sweep`) once older than a launch needs it.
- **Market**: EC2 Fleet refuses a template with `InstanceMarketOptions`; the market is the
  fleet's `DefaultTargetCapacityType`, spot instances are one-time and terminate on interruption.
- **The fleet** is tagged at creation with the job's tags. An instant fleet is a one-time
  request with nothing left to run once it has answered: it is left as AWS keeps it (AWS refuses
  to delete an instant fleet without terminating its instances), not deleted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import tags
from .select import Candidate

SPOT_STRATEGY = "price-capacity-optimized"
ON_DEMAND_STRATEGY = "lowest-price"
MAX_CLIENT_TOKEN = 64  # CreateFleet's and CreateLaunchTemplate's ClientToken
# RunInstances parameters that belong to the pool (overrides), the call or the fleet request,
# never to the launch template.
NOT_IN_TEMPLATE = frozenset(
    {
        "InstanceType",
        "SubnetId",
        "MinCount",
        "MaxCount",
        "ClientToken",
        "InstanceMarketOptions",
        "TagSpecifications",
        "UserData",
    }
)

RunParameters = dict[str, Any]


@dataclass(frozen=True)
class PoolError:
    """One pool AWS could not launch in (or the whole request, when `candidate` is None)."""

    candidate: Candidate | None
    code: str
    message: str


@dataclass(frozen=True)
class FleetAnswer:
    launched: list[tuple[str, Candidate]]  # (instance id, its pool)
    errors: list[PoolError]


def tag_dict(params: RunParameters) -> dict[str, str]:
    """The instance tags of RunInstances parameters."""
    for spec in params.get("TagSpecifications") or []:
        if spec.get("ResourceType") == "instance":
            return {str(t["Key"]): str(t["Value"]) for t in spec.get("Tags", [])}
    return {}


def template_data(params: RunParameters) -> dict[str, Any]:
    """LaunchTemplateData from one pool's RunInstances parameters (the pool's own fields left
    out); the user data base64-encoded, as launch templates take it."""
    data = {k: v for k, v in params.items() if k not in NOT_IN_TEMPLATE}
    data["UserData"] = base64.b64encode(str(params.get("UserData", "")).encode()).decode()
    data["TagSpecifications"] = tags.tag_specifications(tag_dict(params))
    return data


def template_name(job_id: str, data: Mapping[str, Any]) -> str:
    """The job's template name, from its content (the same data, the same name)."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    return f"awsjobs-{job_id}-{digest}"


def fleet_token(job_id: str, pools: Sequence[Candidate]) -> str:
    """CreateFleet's idempotency token for one job and one set of pools: the same across
    repeats and server restarts, another for another offer."""
    offered = ",".join(f"{c.instance_type}/{c.subnet_id}/{c.spot}" for c in pools)
    digest = hashlib.sha256(offered.encode()).hexdigest()[:12]
    return f"awsjobs-{job_id}-{digest}"[:MAX_CLIENT_TOKEN]


def fleet_request(
    template_id: str, pools: Sequence[Candidate], token: str, fleet_tags: Mapping[str, str]
) -> RunParameters:
    """CreateFleet's arguments: one instance of the first-come pool AWS chooses."""
    spot = pools[0].spot
    request: RunParameters = {
        "Type": "instant",
        "ClientToken": token,
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": "spot" if spot else "on-demand",
        },
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "1"},
                "Overrides": [
                    {"InstanceType": c.instance_type, "SubnetId": c.subnet_id} for c in pools
                ],
            }
        ],
        "TagSpecifications": tags.tag_specifications(fleet_tags, ("fleet",)),
    }
    if spot:
        request["SpotOptions"] = {
            "AllocationStrategy": SPOT_STRATEGY,
            "InstanceInterruptionBehavior": "terminate",
        }
    else:
        request["OnDemandOptions"] = {"AllocationStrategy": ON_DEMAND_STRATEGY}
    return request


def _pool_of(item: Mapping[str, Any], pools: Sequence[Candidate]) -> Candidate | None:
    override = (item.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
    wanted = (override.get("InstanceType"), override.get("SubnetId"))
    return next((c for c in pools if (c.instance_type, c.subnet_id) == wanted), None)


def read_answer(answer: Mapping[str, Any], pools: Sequence[Candidate]) -> FleetAnswer:
    """The instances CreateFleet launched (with their pools) and the pools it could not use."""
    launched: list[tuple[str, Candidate]] = []
    for item in answer.get("Instances") or []:
        pool = _pool_of(item, pools)
        if pool is None:  # AWS echoes the override it used; fall back on the type alone
            same_type = [c for c in pools if c.instance_type == item.get("InstanceType")]
            pool = (same_type or list(pools))[0]
        launched.extend((str(iid), pool) for iid in item.get("InstanceIds") or [])
    errors = [
        PoolError(_pool_of(e, pools), str(e.get("ErrorCode", "")), str(e.get("ErrorMessage", "")))
        for e in answer.get("Errors") or []
    ]
    return FleetAnswer(launched, errors)
