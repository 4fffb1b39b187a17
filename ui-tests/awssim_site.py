"""The simulated AWS made ready for the EC2 JupyterLab of the browser tests to launch jobs.

`jupyter_server_ec2_config.py` calls `prepare(url, profile)` when the server starts: the
instance profile its workers are launched with is created (moto refuses a launch with an
unknown one) and the ids of two default subnets (us-east-1a, us-east-1b) are returned for
`c.EC2Backend.subnet_ids` (moto makes them with random ids). Only the simulator on 127.0.0.1
is called, with dummy credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, EndpointConnectionError

REGION = "us-east-1"
ZONES = ("us-east-1a", "us-east-1b")
WAIT_SECONDS = 60.0  # for the simulator, should this server start first


def _client(service: str, url: str) -> Any:
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing to call {url}: only the local simulator")
    return botocore.session.get_session().create_client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def prepare(url: str, instance_profile: str) -> list[str]:
    """Create `instance_profile` unless it exists; the default subnets of ZONES, in order."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            return _prepare(url, instance_profile)
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _create(make: Callable[[], object], exists_code: str) -> None:
    """Call `make`; an answer that it exists already (`exists_code`) is fine."""
    try:
        make()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != exists_code:
            raise


def _prepare(url: str, instance_profile: str) -> list[str]:
    iam = _client("iam", url)
    _create(
        lambda: iam.create_instance_profile(InstanceProfileName=instance_profile),
        "EntityAlreadyExists",
    )
    ec2 = _client("ec2", url)
    found = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in found["Subnets"]}
    return [by_zone[zone] for zone in ZONES]


def prepare_bucket(url: str, bucket: str) -> str:
    """Create `bucket` in the simulator's S3 unless it exists (the S3 storage's bucket)."""
    s3 = _client("s3", url)
    _create(lambda: s3.create_bucket(Bucket=bucket), "BucketAlreadyOwnedByYou")
    return bucket
