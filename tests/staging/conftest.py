"""Fixtures of the staging tests: moto's S3 in server mode on 127.0.0.1 (this process, so the
tests can count what reached it), a clean moto per test, dummy credentials only, and an
aiobotocore S3 client as the server would hold one. Never real AWS.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from moto_support import DUMMY_AWS_ENV, REGION
from staging_support import BUCKET, JOB_ID, Received

from awsjobs_lab.aws.clients import shared_session
from awsjobs_lab.staging import StagingArea


@pytest.fixture
def moto_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean moto for this test, reached with dummy credentials only."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    req = urllib.request.Request(moto_server + "/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(req).read()
    return moto_server


@pytest.fixture
async def s3(moto_endpoint: str) -> AsyncIterator[Any]:
    """An S3 client on moto with a bucket `BUCKET`."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        s3={"addressing_style": "path"},
        max_pool_connections=20,
    )
    async with shared_session().create_client(
        "s3", region_name=REGION, endpoint_url=moto_endpoint, config=config
    ) as client:
        await client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def area() -> StagingArea:
    return StagingArea(bucket=BUCKET, prefix="awsjobs", owner="tester", job_id=JOB_ID)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The server root; the job's folder is `root / "work"`."""
    (tmp_path / "root" / "work").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Received:
    """Counts the body bytes of every PutObject and UploadPart that reaches moto (its server
    runs in this process), independently of what the library says it sent."""
    from moto.s3.responses import S3Response

    seen = Received()
    put_object, upload_part = S3Response.put_object, S3Response.upload_part

    def counted_put(self: Any) -> Any:
        seen.calls.append(("PutObject", self.parse_key_name(), len(self.body)))
        return put_object(self)

    def counted_part(self: Any) -> Any:
        seen.calls.append(("UploadPart", self.parse_key_name(), len(self.body)))
        return upload_part(self)

    monkeypatch.setattr(S3Response, "put_object", counted_put)
    monkeypatch.setattr(S3Response, "upload_part", counted_part)
    return seen
