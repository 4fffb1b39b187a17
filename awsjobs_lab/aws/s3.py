"""S3 calls shared by the staging library and the EC2 backend: listing with pagination, a
HeadObject that answers None for a missing key, reading a small object, deleting keys in
batches, aborting unfinished uploads. Errors leave as `BackendError` through `aws_errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ..errors import BackendError
from .errors import aws_errors, error_code

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
DELETE_BATCH = 1000  # DeleteObjects' limit


def url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


async def list_objects(s3: Any, bucket: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
    """Every object under `prefix` (ListObjectsV2's `Contents` rows), page after page."""
    with aws_errors(f"listing {url(bucket, prefix)}"):
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for row in page.get("Contents", []) or []:
                yield row


async def object_sizes(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Key → size of every object under `prefix`."""
    return {row["Key"]: int(row["Size"]) async for row in list_objects(s3, bucket, prefix)}


async def head_object(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HeadObject's answer, or None when there is no such key."""
    with aws_errors(f"HeadObject {url(bucket, key)}"):
        try:
            answer: dict[str, Any] = await s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
    return answer


async def read_object(s3: Any, bucket: str, key: str) -> bytes:
    """The whole content of a (small) object."""
    with aws_errors(f"GetObject {url(bucket, key)}"):
        answer = await s3.get_object(Bucket=bucket, Key=key)
        async with answer["Body"] as body:
            data: bytes = await body.read()
    return data


async def delete_keys(s3: Any, bucket: str, keys: Sequence[str]) -> int:
    """Delete `keys` (DeleteObjects, 1000 a call); the number deleted. Raises BackendError
    naming the first key S3 refused."""
    deleted = 0
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        with aws_errors(f"DeleteObjects in s3://{bucket}"):
            answer = await s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise BackendError(
                f"DeleteObjects: {len(errors)} key(s) not deleted, e.g. "
                f"{url(bucket, first.get('Key', ''))}: {first.get('Code')}: {first.get('Message')}"
            )
        deleted += len(batch)
    return deleted


async def abort_multipart_uploads(s3: Any, bucket: str, prefix: str) -> int:
    """Abort every unfinished multipart upload under `prefix`; how many."""
    aborted = 0
    with aws_errors(f"aborting the multipart uploads under {url(bucket, prefix)}"):
        paginator = s3.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []) or []:
                try:
                    await s3.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                except ClientError as exc:
                    if error_code(exc) != "NoSuchUpload":  # finished or aborted meanwhile
                        raise
                aborted += 1
    return aborted
