"""Instance choice: fitting types, family lists, the user's override, spot price ranking with
seeded prices, and the on-demand price fallback order (Price List API through AioStubber:
moto has no pricing backend)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from aiobotocore.stub import AioStubber
from botocore.stub import ANY

from awsjobs_lab.aws import catalog
from awsjobs_lab.errors import InvalidRequest


async def test_smallest_fitting_type_when_prices_tie(make_backend):
    # moto's own spot prices are all 0.00001: a tie, broken by size then name.
    backend = make_backend()
    out = await backend.preview(memory_gib=4, cpus=2, spot=True)
    assert out["choice"]["instance_type"] == "c7a.large"
    assert out["choice"]["vcpus"] == 2 and out["choice"]["memory_gib"] == 4
    assert out["choice"]["spot"] is True
    assert len(out["candidates"]) <= 10
    assert set(out["choice"]) == {
        "instance_type",
        "vcpus",
        "memory_gib",
        "hourly_price",
        "price_source",
        "availability_zone",
        "spot",
        "gpus",
        "gpu_model",
        "gpu_memory_gib",
    }
    assert (out["choice"]["gpus"], out["choice"]["gpu_model"]) == (0, None)


async def test_minimum_memory_and_cpus(make_backend):
    backend = make_backend()
    out = await backend.preview(memory_gib=30, cpus=4, spot=True)
    assert out["candidates"]
    for c in out["candidates"]:
        assert c["vcpus"] >= 4 and c["memory_gib"] >= 30
    # 4 vCPUs and 32 GiB: r7i.xlarge is the smallest of the test families.
    assert out["choice"]["instance_type"] == "r7i.xlarge"


async def test_allow_and_deny_lists(make_backend):
    backend = make_backend(allowed_families=["r7i", "c7*"], denied_families=["c7a"])
    out = await backend.preview(memory_gib=1, cpus=2, spot=True)
    families = {c["instance_type"].split(".")[0] for c in out["candidates"]}
    assert families <= {"r7i", "c7i", "c7i-flex"}  # "c7*" matches c7i-flex too
    assert "c7i" in families


async def test_default_deny_list_skips_burstable_types(make_backend):
    backend = make_backend(allowed_families=["t3", "m7i"])
    out = await backend.preview(memory_gib=1, cpus=2, spot=True)
    assert all(not c["instance_type"].startswith("t3.") for c in out["candidates"])


async def test_nothing_fits_is_a_400(make_backend):
    backend = make_backend()
    with pytest.raises(InvalidRequest, match="No allowed instance type"):
        await backend.preview(memory_gib=100000, cpus=2, spot=False)


async def test_user_override_and_its_validation(make_backend):
    backend = make_backend()
    out = await backend.preview(memory_gib=1, cpus=1, spot=True, instance_type="m7i.2xlarge")
    assert out["choice"]["instance_type"] == "m7i.2xlarge"
    assert {c["instance_type"] for c in out["candidates"]} == {"m7i.2xlarge"}
    with pytest.raises(InvalidRequest, match="Unknown EC2 instance type"):
        await backend.preview(memory_gib=1, cpus=1, spot=True, instance_type="x9z.huge")
    with pytest.raises(InvalidRequest, match="not an EC2 instance type"):
        await backend.preview(memory_gib=1, cpus=1, spot=True, instance_type="m7i large;")
    with pytest.raises(InvalidRequest, match="does not support x86_64"):
        await backend.preview(memory_gib=1, cpus=1, spot=True, instance_type="m7g.large")
    with pytest.raises(InvalidRequest, match="not allowed"):
        await backend.preview(memory_gib=1, cpus=1, spot=False, instance_type="t3.large")
    # A GPU type is never chosen automatically, but may be asked for.
    gpu = make_backend(allowed_families=[])
    out = await gpu.preview(memory_gib=1, cpus=1, spot=False, instance_type="g6.xlarge")
    assert out["choice"]["instance_type"] == "g6.xlarge"


async def test_spot_ranking_by_seeded_price_and_cheapest_zone(make_backend, seed_spot):
    seed_spot.update(
        {
            ("m7i.large", "us-east-1a"): "0.0500",
            ("m7i.large", "us-east-1b"): "0.0300",
            ("c7i.large", "us-east-1a"): "0.0400",
            ("c7a.large", "us-east-1b"): "0.0350",
            ("c7a.large", "us-east-1c"): "0.0010",  # not a configured zone: ignored
        }
    )
    backend = make_backend()
    out = await backend.preview(memory_gib=4, cpus=2, spot=True)
    ranked = [(c["instance_type"], c["hourly_price"]) for c in out["candidates"]]
    assert ranked[:3] == [("m7i.large", 0.03), ("c7a.large", 0.035), ("c7i.large", 0.04)]
    assert out["choice"]["availability_zone"] == "us-east-1b"
    assert out["choice"]["price_source"] == "spot-price-history"
    # Types without a price in our zones come after every priced one.
    assert all(c["hourly_price"] is None for c in out["candidates"][3:])


async def test_catalogue_is_filtered_server_side_and_cached(make_backend):
    catalog.clear_caches()
    backend = make_backend(allowed_families=["m7i"])
    ec2 = await backend.clients.ec2()
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    ec2.meta.events.register("provide-client-params.ec2.DescribeInstanceTypes", capture)
    await backend.preview(memory_gib=1, cpus=8, spot=True)
    await backend.preview(memory_gib=1, cpus=16, spot=True)  # served by the cached superset
    assert len(seen) == 1
    filters = {f["Name"]: f["Values"] for f in seen[0]["Filters"]}
    assert filters["current-generation"] == ["true"]
    assert filters["processor-info.supported-architecture"] == ["x86_64"]
    assert filters["supported-usage-class"] == ["spot"]
    assert filters["bare-metal"] == ["false"]
    vcpus = filters["vcpu-info.default-vcpus"]
    assert "8" in vcpus and "16" in vcpus and "4" not in vcpus
    assert filters["instance-type"] == ["m7i.*"]
    # A smaller vCPU need is not covered by that cache entry: one more call.
    await backend.preview(memory_gib=1, cpus=2, spot=True)
    assert len(seen) == 2


# -- on-demand prices --------------------------------------------------------------------------


def _price_item(instance_type: str, usd: str, region: str = "us-east-1") -> str:
    """A Price List API `PriceList` entry, shaped like the real ones (trimmed)."""
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                },
                "sku": "SKU" + instance_type.replace(".", ""),
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    "SKU.JRTCKXETXF": {
                        "priceDimensions": {
                            "SKU.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": usd},
                                "description": f"${usd} per On Demand Linux {instance_type}",
                            }
                        },
                        "offerTermCode": "JRTCKXETXF",
                    }
                }
            },
            "version": "20261120000000",
            "publicationDate": "2026-11-20T00:00:00Z",
        }
    )


async def test_on_demand_prices_from_the_price_list_api_then_the_cache(make_backend, tmp_path):
    # moto has no pricing backend: the Price List API is a recorded response at the client.
    backend = make_backend()
    pricing = await backend.clients.pricing()
    expected = {
        "ServiceCode": "AmazonEC2",
        "Filters": ANY,
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    with AioStubber(pricing) as stub:
        stub.add_response(
            "get_products",
            {
                "FormatVersion": "aws_v1",
                "PriceList": [
                    _price_item("c7a.large", "0.10264"),
                    _price_item("r7i.large", "0.1323"),
                ],
                "NextToken": "page2",
            },
            expected,
        )
        stub.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": [_price_item("c7i.large", "0.08925")]},
            {**expected, "NextToken": "page2"},
        )
        out = await backend.preview(memory_gib=4, cpus=2, spot=False)
        stub.assert_no_pending_responses()
    assert out["choice"]["instance_type"] == "c7i.large"
    assert out["choice"]["hourly_price"] == pytest.approx(0.08925)
    assert out["choice"]["price_source"].startswith("price-list-api")
    assert out["candidates"][1]["instance_type"] == "c7a.large"
    cache = tmp_path / "cache" / "ondemand-prices-us-east-1.json"
    assert json.loads(cache.read_text())["prices"]["c7i.large"] == pytest.approx(0.08925)

    # A new server (no stub: the Price List API would fail) answers from the fresh cache.
    again = make_backend()
    out = await again.preview(memory_gib=4, cpus=2, spot=False)
    assert out["choice"]["price_source"].startswith("cache")
    assert out["choice"]["hourly_price"] == pytest.approx(0.08925)


async def test_on_demand_fallback_stale_cache_then_bundled_then_unknown(
    make_backend, tmp_path, monkeypatch
):
    cache = tmp_path / "cache" / "ondemand-prices-us-east-1.json"
    # 1. No cache, Price List API unreachable → the bundled table.
    backend = make_backend()
    out = await backend.preview(memory_gib=4, cpus=2, spot=False)
    assert out["choice"]["price_source"].startswith("bundled (us-east-1 prices of ")
    bundled, _, _ = catalog.load_bundled_prices()
    assert out["choice"]["hourly_price"] == bundled[out["choice"]["instance_type"]]
    # The failure is remembered: no second Price List attempt within retry_after.
    assert backend.prices._failed_at is not None

    # 2. A stale cache beats the bundled table when the API fails.
    cache.parent.mkdir(parents=True, exist_ok=True)
    old = time.time() - 30 * 24 * 3600
    cache.write_text(json.dumps({"fetched_at": old, "prices": {"m7i.large": 0.0001}}))
    out = await make_backend().preview(memory_gib=4, cpus=2, spot=False)
    assert out["choice"]["instance_type"] == "m7i.large"
    assert out["choice"]["price_source"].startswith("stale-cache")
    # Types the cache does not price rank after the priced one.
    assert all(c["hourly_price"] is None for c in out["candidates"][1:])
    os.unlink(cache)

    # 3. Nothing at all → price unknown, ranked by size.
    def no_table() -> Any:
        raise OSError("no table")

    monkeypatch.setattr(catalog, "load_bundled_prices", no_table)
    out = await make_backend().preview(memory_gib=4, cpus=2, spot=False)
    assert out["choice"]["hourly_price"] is None
    assert out["choice"]["price_source"] == "unknown"
    assert out["choice"]["instance_type"] == "c7a.large"


def test_parse_price_list_skips_junk_and_zero_prices():
    items = [
        _price_item("m7i.large", "0.1008"),
        _price_item("m7i.xlarge", "0.0000000000"),
        "not json",
        json.dumps({"product": {}}),
    ]
    assert catalog.parse_price_list(items) == {"m7i.large": 0.1008}


def test_bundled_table_is_dated_and_sane():
    prices, region, date = catalog.load_bundled_prices()
    assert region == "us-east-1" and date.startswith("20")
    assert 0.05 < prices["m7i.large"] < 0.2
    assert prices["m7i.xlarge"] == pytest.approx(2 * prices["m7i.large"])


async def test_burstable_types_are_left_out_by_ec2s_own_filter(make_backend):
    # The user's deny list means what it says (empty here); burstable families are left out by
    # DescribeInstanceTypes' burstable-performance-supported filter, not by a list of names.
    catalog.clear_caches()
    backend = make_backend(allowed_families=["t3", "m7i"], denied_families=[])
    ec2 = await backend.clients.ec2()
    seen: list[dict[str, Any]] = []
    ec2.meta.events.register(
        "provide-client-params.ec2.DescribeInstanceTypes", lambda params, **_: seen.append(params)
    )
    out = await backend.preview(memory_gib=1, cpus=2, spot=False)
    assert out["candidates"]
    assert all(not c["instance_type"].startswith("t3.") for c in out["candidates"])
    filters = {f["Name"]: f["Values"] for f in seen[0]["Filters"]}
    assert filters["burstable-performance-supported"] == ["false"]
    assert make_backend().denied_families == []
    allowed = make_backend(allowed_families=["t3"], include_burstable_types=True)
    out = await allowed.preview(memory_gib=1, cpus=2, spot=False)
    assert out["choice"]["instance_type"].startswith("t3.")


def test_media_and_neuron_accelerators_count_as_accelerated():
    base = {"InstanceType": "vt1.3xlarge", "VCpuInfo": {"DefaultVCpus": 12}}
    media = {"Accelerators": [{"Count": 1, "Manufacturer": "Xilinx", "Name": "U30"}]}
    assert catalog.InstanceType.from_api({**base, "MediaAcceleratorInfo": media}).accelerated
    assert catalog.InstanceType.from_api({**base, "NeuronInfo": {}}).accelerated
    assert not catalog.InstanceType.from_api(base).accelerated


@pytest.mark.parametrize(
    ("instance_type", "group"),
    [
        ("m7i.large", "standard"),
        ("c7a.xlarge", "standard"),
        ("t3.micro", "standard"),
        ("d3.xlarge", "standard"),
        ("i4i.large", "standard"),
        ("z1d.large", "standard"),
        ("g6.xlarge", "G"),
        ("vt1.3xlarge", "G"),
        ("p5.48xlarge", "P"),
        ("f1.2xlarge", "F"),
        ("x2idn.16xlarge", "X"),
        ("inf2.xlarge", "Inf"),
        ("trn1.2xlarge", "Trn"),
        ("dl1.24xlarge", "DL"),
        ("hpc7g.4xlarge", "HPC"),
        ("u-6tb1.56xlarge", "HighMemory"),
        ("mac2.metal", "Mac"),
    ],
)
def test_quota_groups_follow_aws(instance_type, group):
    assert catalog.quota_group(instance_type) == group
