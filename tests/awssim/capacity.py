"""Capacity and quotas for RunInstances: per type and zone, and vCPU budgets per quota group.

AWS counts running vCPUs against one quota per group of families ("Running On-Demand Standard
(A, C, D, H, I, M, R, T, Z) instances", "… G and VT instances", "… P instances", …), with a
separate set of quotas for spot. Over an on-demand quota RunInstances answers
`VcpuLimitExceeded`; over a spot one, `MaxSpotInstanceCountExceeded`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from moto.ec2.models.instance_types import INSTANCE_TYPES

from .config import CapacityConfig

# Family prefix → quota group, longest prefixes first; every other family is "standard".
_GROUP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("hpc", "HPC"),
    ("inf", "Inf"),
    ("trn", "Trn"),
    ("dl", "DL"),
    ("vt", "G"),
    ("g", "G"),
    ("p", "P"),
    ("f", "F"),
    ("x", "X"),
    ("u-", "HighMemory"),
    ("mac", "Mac"),
)
_FAMILY = re.compile(r"[a-z]+-?")


def quota_group(instance_type: str) -> str:
    family = _FAMILY.match(instance_type)
    letters = family.group(0) if family else ""
    for prefix, group in _GROUP_PREFIXES:
        if letters.startswith(prefix):
            return group
    return "standard"


def vcpus(instance_type: str) -> int:
    info = INSTANCE_TYPES.get(instance_type, {})
    return int(info.get("VCpuInfo", {}).get("DefaultVCpus", 2))


@dataclass(frozen=True)
class LaunchAsk:
    instance_type: str
    zone: str
    market: str  # "spot" or "on-demand"
    count: int


def refusal(ask: LaunchAsk, config: CapacityConfig, used_vcpus: int) -> str | None:
    """The error code RunInstances answers for this ask, or None if it may launch.

    `used_vcpus`: the vCPUs of live instances of the same market and quota group.
    """
    for rule in config.rules:
        if (
            fnmatchcase(ask.instance_type, rule.instance_type)
            and fnmatchcase(ask.zone, rule.zone)
            and rule.market in ("*", ask.market)
        ):
            return rule.error
    budgets = config.spot_vcpus if ask.market == "spot" else config.on_demand_vcpus
    budget = budgets.get(quota_group(ask.instance_type))
    if budget is not None and used_vcpus + ask.count * vcpus(ask.instance_type) > budget:
        return "MaxSpotInstanceCountExceeded" if ask.market == "spot" else "VcpuLimitExceeded"
    return None
