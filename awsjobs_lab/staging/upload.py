"""Sending a job's inputs: a snapshot of its folder into `<area>/in/`, unchanged content never
sent twice.

Every file's content is kept once per owner under `blobs/<sha256>`. A file whose blob already
exists (same size) is copied inside S3 (CopyObject; UploadPartCopy above 5 GiB); any other is
uploaded to its blob first (multipart above 16 MiB, parts in parallel), then copied. Reads run
in threads, never on the event loop. A repeat after a crash re-sends only what is missing:
inputs already in place with the same hash are kept, and an unfinished multipart upload of a
blob is resumed with the parts S3 already holds (matched by size and MD5).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import weakref
from dataclasses import dataclass
from typing import Any

from ..aws.errors import aws_errors
from ..aws.s3 import delete_keys, head_object, is_not_found, object_sizes
from ..errors import BackendError, Conflict
from ..safeopen import open_regular
from .area import StagingArea
from .manifest import InputManifest, write_manifest
from .progress import UPLOADING_INPUTS, ProgressCallback, ProgressThrottle
from .snapshot import Snapshot, SnapshotEntry, check_size
from .transfer import GiB, MiB, part_ranges, run_bounded

MULTIPART_THRESHOLD = 16 * MiB
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000  # S3's limit per multipart upload
COPY_OBJECT_MAX = 5 * GiB  # CopyObject's limit; above it, UploadPartCopy
COPY_PART_SIZE = 1 * GiB
FILE_CONCURRENCY = 8  # files staged at once (HeadObject, CopyObject)
TRANSFER_CONCURRENCY = 4  # requests carrying a body at once: bounds memory to 4 parts
SHA256_METADATA = "sha256"  # x-amz-meta-sha256 on blobs, kept by their copies


class FileChanged(Conflict):
    """A file changed between the snapshot and its upload."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} changed while the job's inputs were being uploaded; run the job again"
        )


async def upload_inputs(
    s3: Any,
    area: StagingArea,
    snapshot: Snapshot,
    max_bytes: int,
    on_progress: ProgressCallback,
) -> InputManifest:
    """Stage `snapshot` into `area.inputs`, write `area.manifest` and return the manifest
    (with the bytes sent and copied). Raises `TooLarge` before sending anything."""
    check_size(snapshot.name, {e.path: e.size for e in snapshot.entries}, max_bytes)
    manifest = InputManifest.of(snapshot)
    throttle = ProgressThrottle(
        UPLOADING_INPUTS, snapshot.total_bytes, len(snapshot.entries), on_progress
    )
    placed = await object_sizes(s3, area.bucket, area.inputs)
    # Left by an earlier attempt at this job's inputs, no longer in the folder.
    stale = sorted(set(placed) - {area.inputs + e.path for e in snapshot.entries})
    await delete_keys(s3, area.bucket, stale)
    run = _InputUpload(s3, area, manifest, throttle, placed)
    await run_bounded([functools.partial(run.stage, e) for e in snapshot.entries], FILE_CONCURRENCY)
    await write_manifest(s3, area, manifest)
    throttle.finish()
    return manifest


# A blob is sent once at a time in this server, however many files and jobs hold its content:
# two jobs sending the same new large file would otherwise share one multipart upload (the
# second resumes the first's, `_Multipart._resumable`), and the second to complete it fails.
# Weak values: a lock lives while someone holds or waits for it.
_BLOB_LOCKS: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def blob_lock(bucket: str, blob: str) -> asyncio.Lock:
    lock = _BLOB_LOCKS.get((bucket, blob))
    if lock is None:
        lock = _BLOB_LOCKS[(bucket, blob)] = asyncio.Lock()
    return lock


@dataclass
class _InputUpload:
    s3: Any
    area: StagingArea
    manifest: InputManifest
    throttle: ProgressThrottle
    placed: dict[str, int]  # key → size already under area.inputs

    def __post_init__(self) -> None:
        self.transfers = asyncio.Semaphore(TRANSFER_CONCURRENCY)

    @property
    def bucket(self) -> str:
        return self.area.bucket

    async def stage(self, entry: SnapshotEntry) -> None:
        key = self.area.inputs + entry.path
        if self.placed.get(key) == entry.size and await self._holds(key, entry):
            self._copied(entry)  # in place already (a repeat after a crash)
            self.throttle.add(files=1)
            return
        blob = self.area.blob(entry.sha256)
        reused = await self._ensure_blob(entry, blob)
        try:
            await self._copy(blob, key, entry.size)
        except BackendError as exc:
            if exc.__cause__ is None or not is_not_found(exc.__cause__):
                raise
            # The blob expired (lifecycle rule) between HeadObject and the copy.
            await self._send(entry, blob)
            reused = False
            await self._copy(blob, key, entry.size)
        if reused:
            self._copied(entry)
        self.throttle.add(files=1)

    async def _ensure_blob(self, entry: SnapshotEntry, blob: str) -> bool:
        """Make sure `blob` holds the entry's content; True when it already did."""
        async with blob_lock(self.bucket, blob):
            head = await head_object(self.s3, self.bucket, blob)
            if head is not None and int(head.get("ContentLength", -1)) == entry.size:
                return True
            await self._send(entry, blob)
            return False

    def _copied(self, entry: SnapshotEntry) -> None:
        self.manifest.bytes_copied += entry.size
        self.throttle.add(entry.size)

    async def _holds(self, key: str, entry: SnapshotEntry) -> bool:
        head = await head_object(self.s3, self.bucket, key)
        return head is not None and head.get("Metadata", {}).get(SHA256_METADATA) == entry.sha256

    async def _send(self, entry: SnapshotEntry, blob: str) -> None:
        try:
            fd = await asyncio.to_thread(open_regular, entry.source)
        except OSError as exc:  # removed, or replaced by a symlink or a FIFO, since
            raise FileChanged(entry.path) from exc
        try:
            await asyncio.to_thread(_check_unchanged, fd, entry)
            if entry.size < MULTIPART_THRESHOLD:
                await self._put(fd, entry, blob)
            else:
                await _Multipart(self, entry, blob, fd).send()
        finally:
            os.close(fd)
        self.manifest.files_sent.append(entry.path)

    async def _put(self, fd: int, entry: SnapshotEntry, blob: str) -> None:
        async with self.transfers:
            data = await asyncio.to_thread(os.pread, fd, entry.size + 1, 0)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise FileChanged(entry.path)
            with aws_errors(f"PutObject {self.area.url(blob)}"):
                await self.s3.put_object(
                    Bucket=self.bucket,
                    Key=blob,
                    Body=data,
                    Metadata={SHA256_METADATA: entry.sha256},
                )
        self.sent(len(data))

    def sent(self, nbytes: int) -> None:
        self.manifest.bytes_sent += nbytes
        self.throttle.add(nbytes)

    async def _copy(self, blob: str, key: str, size: int) -> None:
        """`blob` copied to `key` inside S3 (its metadata kept)."""
        source = {"Bucket": self.bucket, "Key": blob}
        if size <= COPY_OBJECT_MAX:
            with aws_errors(f"CopyObject to {self.area.url(key)}"):
                await self.s3.copy_object(
                    Bucket=self.bucket, Key=key, CopySource=source, MetadataDirective="COPY"
                )
            return
        await _copy_in_parts(self.s3, self.area, source, key, size, self.transfers)


async def _copy_in_parts(
    s3: Any,
    area: StagingArea,
    source: dict[str, str],
    key: str,
    size: int,
    slots: asyncio.Semaphore,
) -> None:
    """A copy above CopyObject's 5 GiB: one UploadPartCopy per GiB, in parallel."""
    head = await head_object(s3, source["Bucket"], source["Key"])
    metadata = (head or {}).get("Metadata", {})
    with aws_errors(f"copying to {area.url(key)}"):
        started = await s3.create_multipart_upload(Bucket=area.bucket, Key=key, Metadata=metadata)
        upload_id = started["UploadId"]
        etags: dict[int, str] = {}

        async def copy_part(number: int, offset: int, length: int) -> None:
            async with slots:
                answer = await s3.upload_part_copy(
                    Bucket=area.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={offset}-{offset + length - 1}",
                )
            etags[number] = answer["CopyPartResult"]["ETag"]

        try:
            ranges = part_ranges(size, COPY_PART_SIZE)
            await run_bounded([functools.partial(copy_part, *r) for r in ranges], len(ranges))
            await s3.complete_multipart_upload(
                Bucket=area.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": _completed(etags)},
            )
        except BaseException:
            await _abort_quietly(s3, area.bucket, key, upload_id)
            raise


def _completed(etags: dict[int, str]) -> list[dict[str, Any]]:
    return [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]


async def _abort_quietly(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    """Best effort (the lifecycle rule aborts what is left after a day)."""
    with contextlib.suppress(Exception):
        await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _check_unchanged(fd: int, entry: SnapshotEntry) -> None:
    st = os.fstat(fd)
    if st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
        raise FileChanged(entry.path)


def part_size_for(size: int) -> int:
    """PART_SIZE, or larger when the file would need more than S3's 10,000 parts."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS))


class _Multipart:
    """One blob sent in parts, in parallel, resuming an unfinished upload of the same blob."""

    def __init__(self, run: _InputUpload, entry: SnapshotEntry, blob: str, fd: int) -> None:
        self.run = run
        self.entry = entry
        self.blob = blob
        self.fd = fd
        self.etags: dict[int, str] = {}

    async def send(self) -> None:
        s3, bucket = self.run.s3, self.run.bucket
        with aws_errors(f"multipart upload of {self.run.area.url(self.blob)}"):
            upload_id, held = await self._resumable()
            try:
                ranges = part_ranges(self.entry.size, part_size_for(self.entry.size))
                parts = [functools.partial(self._part, upload_id, held, *r) for r in ranges]
                await run_bounded(parts, len(parts))
                await asyncio.to_thread(_check_unchanged, self.fd, self.entry)
                await s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key=self.blob,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": _completed(self.etags)},
                )
            except FileChanged:
                await _abort_quietly(s3, bucket, self.blob, upload_id)
                raise

    async def _resumable(self) -> tuple[str, dict[int, tuple[int, str]]]:
        """An unfinished upload of this blob and its parts (number → size, ETag), or a new
        upload with none."""
        s3, bucket = self.run.s3, self.run.bucket
        answer = await s3.list_multipart_uploads(Bucket=bucket, Prefix=self.blob)
        uploads = [u for u in answer.get("Uploads", []) or [] if u["Key"] == self.blob]
        if uploads:
            upload_id = max(uploads, key=lambda u: u["Initiated"])["UploadId"]
            held: dict[int, tuple[int, str]] = {}
            paginator = s3.get_paginator("list_parts")
            async for page in paginator.paginate(Bucket=bucket, Key=self.blob, UploadId=upload_id):
                for part in page.get("Parts", []) or []:
                    held[int(part["PartNumber"])] = (int(part["Size"]), part["ETag"])
            return upload_id, held
        started = await s3.create_multipart_upload(
            Bucket=bucket, Key=self.blob, Metadata={SHA256_METADATA: self.entry.sha256}
        )
        return started["UploadId"], {}

    async def _part(
        self,
        upload_id: str,
        held: dict[int, tuple[int, str]],
        number: int,
        offset: int,
        length: int,
    ) -> None:
        async with self.run.transfers:
            data = await asyncio.to_thread(os.pread, self.fd, length, offset)
            if len(data) != length:
                raise FileChanged(self.entry.path)
            kept = held.get(number)
            if kept is not None and kept[0] == length:
                etag = kept[1]
                if etag.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest():
                    self.etags[number] = etag
                    self.run.manifest.bytes_copied += length
                    self.run.throttle.add(length)
                    return
            answer = await self.run.s3.upload_part(
                Bucket=self.run.bucket,
                Key=self.blob,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
        self.etags[number] = answer["ETag"]
        self.run.sent(length)
