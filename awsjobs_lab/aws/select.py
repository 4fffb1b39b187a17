"""Choosing the instance: the cheapest type that fits, and where to launch it.

A candidate is a (type, availability zone, subnet) with its hourly price: a *pool*. For spot the
price is per zone (one configured subnet per zone: the first); a type with no price history in
our zones is a candidate in each of them. For on-demand the price is the same in every zone, so
each configured subnet is a candidate in order. One launch offers the pools of the
`FLEET_TYPES` best types at once (`fleet_pools`; EC2 Fleet picks among them, `aws.fleet`).

Ranking: known prices first, cheapest first; then unknown prices by size (vCPUs, memory), so
the smallest type that fits wins when nothing is priced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import InvalidRequest
from ..gpus import NO_GPU, GpuInfo, GpuNeed, gpu_facts, meets
from .catalog import Catalog, InstanceType, OnDemandPrices, family_matches

INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
FLEET_TYPES = 10  # instance types one launch offers, each in every zone it may run in


@dataclass(frozen=True)
class Candidate:
    instance_type: str
    vcpus: int
    memory_gib: float
    hourly_price: float | None
    price_source: str
    availability_zone: str
    subnet_id: str
    spot: bool
    gpu: GpuInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """The shape served by `GET instance-types` (no subnet id)."""
        data = self.to_dict()
        data.pop("subnet_id")
        data.pop("gpu")
        data.update(gpu_facts(self.gpu))
        return data


@dataclass(frozen=True)
class Policy:
    allowed_families: tuple[str, ...] = ()
    denied_families: tuple[str, ...] = ()
    include_accelerated: bool = False
    include_burstable: bool = False
    max_priced_types: int = 40

    def permits_family(self, family: str) -> bool:
        if self.allowed_families and not family_matches(family, self.allowed_families):
            return False
        return not family_matches(family, self.denied_families)


def fits(t: InstanceType, *, memory_gib: float, cpus: int) -> bool:
    return t.vcpus >= cpus and t.memory_mib >= memory_gib * 1024


def _server_side_families(policy: Policy) -> tuple[str, ...]:
    # Plain family names and '*'/'?' patterns can be sent to EC2 as 'family.*' filters.
    return tuple(p for p in policy.allowed_families if re.fullmatch(r"[a-z0-9*?-]+", p))


async def rank(
    catalog: Catalog,
    prices: OnDemandPrices,
    *,
    memory_gib: float,
    cpus: int,
    spot: bool,
    subnets: Sequence[tuple[str, str]],
    policy: Policy,
    instance_type: str | None = None,
    gpus: GpuNeed = NO_GPU,
) -> list[Candidate]:
    """All launch candidates, best first. `subnets`: (subnet id, zone) in configured order.
    Raises InvalidRequest when nothing fits or the requested type is unknown or not allowed."""
    if not subnets:
        raise InvalidRequest("No subnet is configured for the EC2 backend.")
    if instance_type:
        types = [await _requested(catalog, instance_type, spot=spot, policy=policy)]
        _check_named_gpus(types[0], gpus)
    else:
        pool = await catalog.instance_types(
            min_vcpus=cpus,
            spot=spot,
            allowed_families=_server_side_families(policy),
            include_burstable=policy.include_burstable,
        )
        types = [
            t
            for t in pool
            if fits(t, memory_gib=memory_gib, cpus=cpus)
            and policy.permits_family(t.family)
            and (gpus.wanted or policy.include_accelerated or not t.accelerated)
            and meets(t.gpu, gpus)
            and (policy.include_burstable or not t.burstable)
            and (spot or "on-demand" in t.usage_classes)
            and (not spot or "spot" in t.usage_classes)
        ]
        if not types:
            raise InvalidRequest(
                f"No allowed instance type has {cpus} vCPUs and {memory_gib:g} GiB of memory"
                f"{' and ' + gpus.describe() if gpus.wanted else ''}"
                f"{' for spot' if spot else ''}; ask for less, or change the family lists."
            )
        # Prices are looked up for the smallest types only: the cheapest is among them.
        types.sort(key=lambda t: (t.vcpus, t.memory_mib, t.name))
        types = types[: max(1, policy.max_priced_types)]
    if spot:
        return _with_gpus(await _rank_spot(catalog, types, subnets), types)
    return _with_gpus(await _rank_on_demand(prices, types, subnets), types)


def _check_named_gpus(info: InstanceType, gpus: GpuNeed) -> None:
    if not meets(info.gpu, gpus):
        raise InvalidRequest(
            f"Instance type {info.name} does not have {gpus.describe()}; ask for less, or "
            "leave the instance type to the automatic choice."
        )


def _with_gpus(candidates: list[Candidate], types: list[InstanceType]) -> list[Candidate]:
    """The candidates with their type's GPUs (served by the preview)."""
    gpus = {t.name: t.gpu for t in types}
    return [replace(c, gpu=gpus.get(c.instance_type)) for c in candidates]


async def _requested(catalog: Catalog, name: str, *, spot: bool, policy: Policy) -> InstanceType:
    if not INSTANCE_TYPE_RE.match(name):
        raise InvalidRequest(f"{name!r} is not an EC2 instance type name (like 'm7i.large').")
    info = await catalog.lookup(name)
    if info is None:
        raise InvalidRequest(f"Unknown EC2 instance type {name!r} in this region.")
    if catalog.architecture not in info.architectures:
        raise InvalidRequest(
            f"Instance type {name} does not support {catalog.architecture}, the worker image's "
            "architecture."
        )
    usage = "spot" if spot else "on-demand"
    if usage not in info.usage_classes:
        raise InvalidRequest(f"Instance type {name} cannot be launched as {usage}.")
    if not policy.permits_family(info.family):
        raise InvalidRequest(
            f"Instance family {info.family} is not allowed by this server's configuration."
        )
    if info.burstable and not policy.include_burstable:
        raise InvalidRequest(
            f"Instance type {name} is burstable (its CPU credits run out during long jobs): "
            "not allowed by this server's configuration (c.EC2Backend.include_burstable_types)."
        )
    return info


def _order_key(c: Candidate, size: dict[str, tuple[int, int]]) -> tuple[Any, ...]:
    known = c.hourly_price is not None
    return (
        0 if known else 1,
        c.hourly_price if known else 0.0,
        size[c.instance_type],
        c.instance_type,
    )


async def _rank_spot(
    catalog: Catalog, types: list[InstanceType], subnets: Sequence[tuple[str, str]]
) -> list[Candidate]:
    zones: dict[str, str] = {}
    for subnet, zone in subnets:
        zones.setdefault(zone, subnet)  # one subnet per zone: the first configured
    prices = await catalog.spot_prices([t.name for t in types], zones)
    size = {t.name: (t.vcpus, t.memory_mib) for t in types}
    out: list[Candidate] = []
    for t in types:
        priced = [(p, z) for (name, z), p in prices.items() if name == t.name and z in zones]
        if priced:
            for price, zone in sorted(priced):
                out.append(
                    Candidate(
                        t.name, t.vcpus, t.memory_gib, price, "spot-price-history", zone,
                        zones[zone], True,
                    )
                )  # fmt: skip
        else:
            # No price history in our zones: unknown price, in every zone (AWS knows).
            for zone, subnet in zones.items():
                out.append(
                    Candidate(t.name, t.vcpus, t.memory_gib, None, "unknown", zone, subnet, True)
                )
    order = {z: i for i, (_, z) in enumerate(subnets)}
    out.sort(key=lambda c: (*_order_key(c, size), order.get(c.availability_zone, 0)))
    return out


async def _rank_on_demand(
    prices: OnDemandPrices, types: list[InstanceType], subnets: Sequence[tuple[str, str]]
) -> list[Candidate]:
    table = await prices.table()
    size = {t.name: (t.vcpus, t.memory_mib) for t in types}
    out: list[Candidate] = []
    for t in types:
        price = table.prices.get(t.name)
        source = table.label if price is not None else "unknown"
        for subnet, zone in subnets:
            out.append(Candidate(t.name, t.vcpus, t.memory_gib, price, source, zone, subnet, False))
    order = {s: i for i, (s, _) in enumerate(subnets)}
    out.sort(key=lambda c: (*_order_key(c, size), order[c.subnet_id]))
    return out


def distinct_types(candidates: Iterable[Candidate], limit: int = 10) -> list[Candidate]:
    """The best candidate of each type, in rank order, at most `limit` (for the preview)."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.instance_type in seen:
            continue
        seen.add(c.instance_type)
        out.append(c)
        if len(out) >= limit:
            break
    return out


def fleet_pools(candidates: Sequence[Candidate], types: int = FLEET_TYPES) -> list[Candidate]:
    """The pools one launch offers: every candidate of the `types` best types, in rank order."""
    best = {c.instance_type for c in distinct_types(candidates, types)}
    return [c for c in candidates if c.instance_type in best]


def zones_of(candidates: Iterable[Candidate]) -> list[str]:
    """The availability zones of these candidates, in first-seen order."""
    return list(dict.fromkeys(c.availability_zone for c in candidates))
