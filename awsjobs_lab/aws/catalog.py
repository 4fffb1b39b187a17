"""The instance-type catalogue and prices, cached.

- Instance types: `DescribeInstanceTypes` with server-side filters (current generation, the
  AMI's architecture, the usage class, not bare metal, at least N vCPUs, allowed families),
  paginated, cached for the life of the process (the catalogue is static).
- Spot prices: the latest `DescribeSpotPriceHistory` row per type and availability zone,
  cached in memory for a few minutes.
- On-demand prices, in this order (the first that answers wins):
  1. the disk cache, if younger than `max_age`;
  2. the AWS Price List API (`pricing:GetProducts`, us-east-1 endpoint, short timeout, two
     attempts); the answer is written to the disk cache;
  3. the disk cache of any age ("stale");
  4. the table bundled with the package (`ondemand_prices.json`, us-east-1 Linux prices, dated);
  5. nothing: the price is unknown and candidates are ranked by size instead.
  A failed Price List call is remembered for `retry_after` seconds so previews stay fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

from ..gpus import GpuInfo, parse_gpu_info
from .clients import AWSClients
from .errors import error_code, error_message

log = logging.getLogger(__name__)

# Every DefaultVCpus value EC2 has (plus a few spare); "at least N vCPUs" is sent as the list of
# values >= N, because DescribeInstanceTypes filters match exact values only.
VCPU_COUNTS = (
    1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 30, 32, 36, 40, 44, 48, 56, 60, 64, 72, 80,
    88, 96, 104, 112, 120, 128, 144, 160, 176, 192, 208, 224, 256, 288, 320, 352, 384, 416,
    448, 480, 512, 576, 640, 768, 896, 960, 1024, 1152, 1792, 1920,
)  # fmt: skip
# Catalogue fetches are cached per bucket; a cached smaller bucket is a superset of a larger one.
VCPU_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

SPOT_PRICE_TTL = 300.0
SPOT_TYPES_PER_CALL = 50
PRICE_LIST_TIMEOUT = 30.0


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_mib: int
    architectures: tuple[str, ...]
    usage_classes: tuple[str, ...]
    accelerated: bool = False
    current_generation: bool = True
    bare_metal: bool = False
    burstable: bool = False  # CPU credits: they run out during long jobs
    gpu: GpuInfo | None = None  # its GPUs (DescribeInstanceTypes' GpuInfo), if any

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def memory_gib(self) -> float:
        return round(self.memory_mib / 1024.0, 3)

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> InstanceType:
        return cls(
            name=row["InstanceType"],
            vcpus=int(row.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
            memory_mib=int(row.get("MemoryInfo", {}).get("SizeInMiB", 0)),
            architectures=tuple(row.get("ProcessorInfo", {}).get("SupportedArchitectures", [])),
            usage_classes=tuple(row.get("SupportedUsageClasses", [])),
            accelerated=any(k in row for k in ACCELERATOR_INFO),
            current_generation=bool(row.get("CurrentGeneration", True)),
            bare_metal=bool(row.get("BareMetal", False)),
            burstable=bool(row.get("BurstablePerformanceSupported", False)),
            gpu=parse_gpu_info(row),
        )


# DescribeInstanceTypes' fields of a type with accelerators (GPUs, FPGAs, Inferentia and
# Trainium, media transcoders): expensive, never chosen unless asked for.
ACCELERATOR_INFO = (
    "GpuInfo",
    "FpgaInfo",
    "InferenceAcceleratorInfo",
    "NeuronInfo",
    "MediaAcceleratorInfo",
)
# AWS's On-Demand (and, separately, Spot) vCPU quotas are per group of families: "Standard
# (A, C, D, H, I, M, R, T, Z)", "G and VT", "P", "F", "X", "Inf", "Trn", "DL", "HPC", "High
# Memory" (u-*), "Mac". A family's first letters → its group (longer prefixes first, so that
# "mac" is not M nor "dl" D); any other family: standard.
QUOTA_GROUP_LETTERS = (
    ("hpc", "HPC"),
    ("inf", "Inf"),
    ("trn", "Trn"),
    ("mac", "Mac"),
    ("dl", "DL"),
    ("vt", "G"),
    ("u", "HighMemory"),
    ("g", "G"),
    ("p", "P"),
    ("f", "F"),
    ("x", "X"),
)
STANDARD_QUOTA = "standard"


def quota_group(instance_type: str) -> str:
    """The vCPU quota group an instance type counts against ('standard', 'G', 'P', ...)."""
    family = instance_type.split(".", 1)[0]
    for prefix, group in QUOTA_GROUP_LETTERS:
        if family.startswith(prefix):
            return group
    return STANDARD_QUOTA


def family_matches(family: str, patterns: Iterable[str]) -> bool:
    """Whether an instance family ('m7i') matches any pattern ('m7i', 'm7*', 'c?a')."""
    return any(fnmatchcase(family, p) for p in patterns)


def vcpu_bucket(cpus: int) -> int:
    return max(b for b in VCPU_BUCKETS if b <= max(1, cpus))


# Process-wide: the catalogue does not change while the server runs.
_TYPE_CACHE: dict[tuple[Any, ...], dict[str, InstanceType]] = {}


def clear_caches() -> None:
    """Forget the cached catalogue (tests)."""
    _TYPE_CACHE.clear()


class Catalog:
    """Instance types and spot prices from EC2 for one region and architecture."""

    def __init__(self, clients: AWSClients, *, architecture: str) -> None:
        self.clients = clients
        self.architecture = architecture
        # (type, zone) -> (price, monotonic time it was read)
        self._spot_cache: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = asyncio.Lock()

    def _key(self, usage: str, allowed: tuple[str, ...], burstable: bool) -> tuple[Any, ...]:
        endpoint = self.clients.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")
        return (endpoint, self.clients.region, self.architecture, usage, allowed, burstable)

    async def instance_types(
        self,
        *,
        min_vcpus: int,
        spot: bool,
        allowed_families: Iterable[str] = (),
        include_burstable: bool = False,
    ) -> list[InstanceType]:
        """Current-generation types of our architecture with at least `min_vcpus` vCPUs that
        support the usage class, not burstable unless asked for; when `allowed_families` is
        given, only those families."""
        usage = "spot" if spot else "on-demand"
        allowed = tuple(sorted(set(allowed_families)))
        base = self._key(usage, allowed, include_burstable)
        bucket = vcpu_bucket(min_vcpus)
        async with self._lock:
            found = None
            for b in sorted(VCPU_BUCKETS, reverse=True):
                if b <= bucket and (*base, b) in _TYPE_CACHE:
                    found = _TYPE_CACHE[(*base, b)]
                    break
            if found is None:
                found = await self._fetch(usage, allowed, bucket, include_burstable)
                _TYPE_CACHE[(*base, bucket)] = found
        return [t for t in found.values() if t.vcpus >= min_vcpus]

    async def _fetch(
        self, usage: str, allowed: tuple[str, ...], bucket: int, include_burstable: bool
    ) -> dict[str, InstanceType]:
        filters: list[dict[str, Any]] = [
            {"Name": "current-generation", "Values": ["true"]},
            {"Name": "processor-info.supported-architecture", "Values": [self.architecture]},
            {"Name": "supported-usage-class", "Values": [usage]},
            {"Name": "bare-metal", "Values": ["false"]},
            {
                "Name": "vcpu-info.default-vcpus",
                "Values": [str(n) for n in VCPU_COUNTS if n >= bucket],
            },
        ]
        if allowed:
            filters.append({"Name": "instance-type", "Values": [f"{p}.*" for p in allowed]})
        if not include_burstable:
            filters.append({"Name": "burstable-performance-supported", "Values": ["false"]})
        ec2 = await self.clients.ec2()
        out: dict[str, InstanceType] = {}
        paginator = ec2.get_paginator("describe_instance_types")
        async for page in paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 100}):
            for row in page.get("InstanceTypes", []):
                info = InstanceType.from_api(row)
                out[info.name] = info
        log.info(
            "awsjobs: %d %s instance types (>= %d vCPUs, %s) in %s",
            len(out),
            usage,
            bucket,
            self.architecture,
            self.clients.region,
        )
        return out

    async def lookup(self, name: str) -> InstanceType | None:
        """One type by name, from the cache or from EC2; None if EC2 doesn't know it."""
        prefix = self._key("", (), False)[:3]  # same endpoint, region and architecture
        for key, types in _TYPE_CACHE.items():
            if key[:3] == prefix and name in types:
                return types[name]
        ec2 = await self.clients.ec2()
        try:
            resp = await ec2.describe_instance_types(InstanceTypes=[name])
        except Exception as exc:
            if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
                return None
            raise
        rows = resp.get("InstanceTypes", [])
        return InstanceType.from_api(rows[0]) if rows else None

    async def spot_prices(
        self, types: Iterable[str], zones: Iterable[str]
    ) -> dict[tuple[str, str], float]:
        """Latest spot price per (type, zone), for the given types in the given zones."""
        names = sorted(set(types))
        azs = sorted(set(zones))
        now = time.monotonic()
        result: dict[tuple[str, str], float] = {}
        missing = []
        for name in names:
            fresh = [
                (k, v[0])
                for k, v in self._spot_cache.items()
                if k[0] == name and k[1] in azs and now - v[1] < SPOT_PRICE_TTL
            ]
            if fresh:
                result.update(fresh)
            else:
                missing.append(name)
        if not missing or not azs:
            return result
        ec2 = await self.clients.ec2()
        paginator = ec2.get_paginator("describe_spot_price_history")
        latest: dict[tuple[str, str], tuple[dt.datetime, float]] = {}
        for start in range(0, len(missing), SPOT_TYPES_PER_CALL):
            chunk = missing[start : start + SPOT_TYPES_PER_CALL]
            # ProductDescriptions narrows real AWS to Linux prices (moto ignores it); a
            # 'product-description' *filter* would make moto return nothing, so none is used.
            # StartTime=now asks real AWS for the price in effect now (moto ignores it).
            async for page in paginator.paginate(
                InstanceTypes=chunk,
                ProductDescriptions=["Linux/UNIX"],
                StartTime=dt.datetime.now(dt.timezone.utc),
                Filters=[{"Name": "availability-zone", "Values": azs}],
            ):
                for row in page.get("SpotPriceHistory", []):
                    key = (row.get("InstanceType", ""), row.get("AvailabilityZone", ""))
                    if key[0] not in chunk or key[1] not in azs:
                        continue
                    desc = row.get("ProductDescription", "Linux/UNIX")
                    if desc not in ("Linux/UNIX", "Linux/UNIX (Amazon VPC)"):
                        continue
                    try:
                        price = float(row["SpotPrice"])
                    except (KeyError, ValueError):
                        continue
                    stamp = row.get("Timestamp") or dt.datetime.min.replace(tzinfo=dt.timezone.utc)
                    if isinstance(stamp, str):
                        stamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    if key not in latest or stamp >= latest[key][0]:
                        latest[key] = (stamp, price)
        for key, (_, price) in latest.items():
            self._spot_cache[key] = (price, now)
            result[key] = price
        return result


@dataclass(frozen=True)
class PriceTable:
    """On-demand USD/hour per instance type, and where the numbers came from."""

    prices: dict[str, float]
    source: str  # "price-list-api", "cache", "stale-cache", "bundled", "unknown"
    detail: str = ""  # e.g. the age or date of the numbers

    @property
    def label(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


def parse_price_list(items: Iterable[str | dict[str, Any]]) -> dict[str, float]:
    """Instance type → on-demand USD/hour from Price List API `PriceList` entries (JSON strings)."""
    prices: dict[str, float] = {}
    for item in items:
        try:
            data = json.loads(item) if isinstance(item, str) else item
            attrs = data["product"]["attributes"]
            name = attrs["instanceType"]
            for term in data.get("terms", {}).get("OnDemand", {}).values():
                for dim in term.get("priceDimensions", {}).values():
                    if dim.get("unit", "Hrs") not in ("Hrs", "Hours"):
                        continue
                    usd = float(dim["pricePerUnit"]["USD"])
                    if usd > 0 and (name not in prices or usd < prices[name]):
                        prices[name] = usd
        except (KeyError, TypeError, ValueError, json.JSONDecodeError):
            continue
    return prices


def load_bundled_prices() -> tuple[dict[str, float], str, str]:
    """The bundled table: (prices, region, date).

    A fallback for when the Price List API and its cache are out of reach, so that a preview
    and the spending cap still have a price. Its figures are AWS's us-east-1 Linux on-demand
    list prices, GPU types included (g4dn, g5, g6, g6e, p3, p4d, p5), as the Price List API
    gave them on 2026-07-20 in the table AWS's Karpenter generates from it
    (github.com/aws/karpenter-provider-aws, pkg/providers/pricing/zz_generated.pricing_aws.go);
    the file's `note` and `gpu_source` say the same beside the figures."""
    text = resources.files(__package__).joinpath("ondemand_prices.json").read_text("utf-8")
    data = json.loads(text)
    return (
        {str(k): float(v) for k, v in data["prices"].items()},
        str(data["region"]),
        str(data["date"]),
    )


class OnDemandPrices:
    """On-demand prices with the fallback order described in the module docstring."""

    def __init__(
        self,
        clients: AWSClients,
        *,
        cache_dir: str,
        max_age_seconds: float = 7 * 24 * 3600,
        retry_after_seconds: float = 900,
    ) -> None:
        self.clients = clients
        self.cache_dir = cache_dir
        self.max_age_seconds = max_age_seconds
        self.retry_after_seconds = retry_after_seconds
        self._failed_at: float | None = None
        self._memory: PriceTable | None = None
        self._memory_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) / f"ondemand-prices-{self.clients.region}.json"

    def _read_cache(self) -> tuple[dict[str, float], float] | None:
        try:
            data = json.loads(self.cache_path.read_text("utf-8"))
            prices = {str(k): float(v) for k, v in data["prices"].items()}
            return prices, float(data["fetched_at"])
        except (OSError, KeyError, TypeError, ValueError):
            return None

    def _write_cache(self, prices: dict[str, float]) -> None:
        path = self.cache_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        payload = {"region": self.clients.region, "fetched_at": time.time(), "prices": prices}
        tmp.write_text(json.dumps(payload, sort_keys=True), "utf-8")
        os.replace(tmp, path)

    async def fetch(self) -> dict[str, float]:
        """All Linux, shared-tenancy on-demand prices of the region from the Price List API."""
        pricing = await self.clients.pricing()
        filters = [
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": self.clients.region},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
            {"Type": "TERM_MATCH", "Field": "licenseModel", "Value": "No License required"},
        ]
        items: list[str] = []
        paginator = pricing.get_paginator("get_products")
        async for page in paginator.paginate(
            ServiceCode="AmazonEC2",
            Filters=filters,
            FormatVersion="aws_v1",
            PaginationConfig={"PageSize": 100},
        ):
            items.extend(page.get("PriceList", []))
        prices = parse_price_list(items)
        if not prices:
            raise ValueError("the Price List API returned no EC2 prices")
        return prices

    async def table(self) -> PriceTable:
        async with self._lock:
            now = time.time()
            if self._memory is not None and now - self._memory_at < 60:
                return self._memory
            table = await self._table(now)
            self._memory, self._memory_at = table, now
            return table

    async def _table(self, now: float) -> PriceTable:
        cached = await asyncio.to_thread(self._read_cache)
        if cached is not None and now - cached[1] < self.max_age_seconds:
            return PriceTable(cached[0], "cache", f"fetched {_iso(cached[1])}")
        recently_failed = (
            self._failed_at is not None and now - self._failed_at < self.retry_after_seconds
        )
        if not recently_failed:
            try:
                prices = await asyncio.wait_for(self.fetch(), PRICE_LIST_TIMEOUT)
            except Exception as exc:
                self._failed_at = now
                log.warning(
                    "awsjobs: the AWS Price List API failed (%s); using fallback prices",
                    error_message(exc),
                )
            else:
                self._failed_at = None
                try:
                    await asyncio.to_thread(self._write_cache, prices)
                except OSError as exc:
                    log.warning("awsjobs: cannot write the price cache: %s", exc)
                return PriceTable(prices, "price-list-api", f"fetched {_iso(now)}")
        if cached is not None:
            return PriceTable(cached[0], "stale-cache", f"fetched {_iso(cached[1])}")
        try:
            prices, region, date = load_bundled_prices()
        except (OSError, KeyError, ValueError) as exc:
            log.warning("awsjobs: cannot read the bundled price table: %s", exc)
            return PriceTable({}, "unknown")
        detail = f"{region} prices of {date}"
        if region != self.clients.region:
            detail += f", approximate for {self.clients.region}"
        return PriceTable(prices, "bundled", detail)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
