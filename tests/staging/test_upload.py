"""Sending a job's inputs to moto's S3: cold, then after one edit (only that file travels),
multipart, deduplication across jobs, a repeat after a crash, the size cap, big copies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from staging_support import BUCKET, Received

from awsjobs_lab.aws.s3 import read_object
from awsjobs_lab.staging import (
    InputManifest,
    Progress,
    StagingArea,
    TooLarge,
    ignore_progress,
    read_manifest,
    snapshot_folder,
    upload_inputs,
)
from awsjobs_lab.staging import upload as upload_module
from awsjobs_lab.staging.progress import ProgressThrottle
from awsjobs_lab.staging.upload import MULTIPART_THRESHOLD, PART_SIZE, FileChanged

GiB = 1 << 30


def make_folder(work: Path) -> dict[str, bytes]:
    files = {
        "analysis.ipynb": b'{"cells": []}',
        "data/a.csv": os.urandom(300_000),
        "data/b.csv": os.urandom(200_000),
        "lib/helpers.py": b"def f():\n    return 1\n",
        "lib/__init__.py": b"",
    }
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    return files


async def upload(s3: Any, area: StagingArea, root: Path, cap: int = GiB) -> InputManifest:
    snapshot = snapshot_folder(root / "work", root)
    return await upload_inputs(s3, area, snapshot, cap, ignore_progress)


async def read(s3: Any, key: str) -> bytes:
    return await read_object(s3, BUCKET, key)


async def test_cold_then_one_edit_sends_only_that_file(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    files = make_folder(root / "work")
    total = sum(len(d) for d in files.values())
    first = await upload(s3, area, root)
    assert first.bytes_sent == total and first.bytes_copied == 0
    assert received.bytes(area.blobs) == total  # what moto received, counted on its side
    for name, data in files.items():
        assert await read(s3, area.inputs + name) == data

    received.calls.clear()
    edited = b'{"cells": [{"cell_type": "code"}]}'
    (root / "work" / "analysis.ipynb").write_bytes(edited)
    second = await upload(s3, area, root)
    assert second.files_sent == ["analysis.ipynb"]
    assert second.bytes_sent == len(edited)
    assert second.bytes_copied == total - len(files["analysis.ipynb"])
    assert received.bytes(area.blobs) == len(edited)
    assert received.operations() == ["PutObject", "PutObject"]  # the blob, then the manifest
    assert await read(s3, area.inputs + "analysis.ipynb") == edited


async def test_another_job_of_the_same_folder_copies_everything(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    make_folder(root / "work")
    await upload(s3, area, root)
    received.calls.clear()
    other = StagingArea(BUCKET, area.prefix, area.owner, "fedcba9876543210")
    again = await upload(s3, other, root)
    assert again.bytes_sent == 0 and again.files_sent == []
    assert received.bytes(area.blobs) == 0
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix=other.inputs)
    assert len(listed["Contents"]) == 5


async def test_two_jobs_sending_the_same_new_big_file_at_once_send_it_once(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    """Two jobs of one folder submitted together: one multipart upload of the shared blob,
    not two jobs completing the same upload (the second then failed)."""
    data = os.urandom(MULTIPART_THRESHOLD + PART_SIZE)
    (root / "work" / "big.bin").write_bytes(data)
    other = StagingArea(BUCKET, area.prefix, area.owner, "fedcba9876543210")
    first, second = await asyncio.gather(upload(s3, area, root), upload(s3, other, root))
    assert sorted([first.bytes_sent, second.bytes_sent]) == [0, len(data)]
    assert received.bytes(area.blobs) == len(data)
    assert received.operations().count("UploadPart") == 3  # 24 MiB in 8 MiB parts, once
    for each in (area, other):
        assert await read(s3, each.inputs + "big.bin") == data
    assert not (await s3.list_multipart_uploads(Bucket=BUCKET)).get("Uploads")


async def test_the_manifest_is_written_beside_the_inputs(
    s3: Any, area: StagingArea, root: Path
) -> None:
    files = make_folder(root / "work")
    manifest = await upload(s3, area, root)
    stored = await read_manifest(s3, area)
    assert stored.files == manifest.files
    row = json.loads(await read(s3, area.manifest))["files"]["data/a.csv"]
    assert row["sha256"] == hashlib.sha256(files["data/a.csv"]).hexdigest()
    assert row["size"] == len(files["data/a.csv"])
    assert row["mtime_ns"] == (root / "work" / "data" / "a.csv").stat().st_mtime_ns


async def test_a_big_file_goes_in_parts_and_reports_progress(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    data = os.urandom(MULTIPART_THRESHOLD + 3 * PART_SIZE // 2)
    (root / "work" / "big.bin").write_bytes(data)
    seen: list[Progress] = []
    snapshot = snapshot_folder(root / "work", root)
    manifest = await upload_inputs(s3, area, snapshot, GiB, seen.append)
    parts = [n for op, _, n in received.calls if op == "UploadPart"]
    assert sorted(parts) == sorted([PART_SIZE, PART_SIZE, PART_SIZE, PART_SIZE // 2])
    assert manifest.bytes_sent == len(data)
    assert await read(s3, area.inputs + "big.bin") == data
    last = seen[-1]
    assert last.to_dict() == {
        "phase": "uploading_inputs",
        "bytes_done": len(data),
        "bytes_total": len(data),
        "files_done": 1,
        "files_total": 1,
    }
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)
    assert (seen[0].bytes_done, seen[0].bytes_total) == (0, len(data))  # reported at once


def test_progress_is_reported_at_once_then_throttled() -> None:
    """The panel shows the phase and its total before the first file is done."""
    seen: list[Progress] = []
    throttle = ProgressThrottle("uploading_inputs", 300, 3, seen.append, interval=3600)
    assert [p.to_dict() for p in seen] == [
        {
            "phase": "uploading_inputs",
            "bytes_done": 0,
            "bytes_total": 300,
            "files_done": 0,
            "files_total": 3,
        }
    ]
    throttle.add(100, files=1)
    assert len(seen) == 1  # within the interval: not reported
    throttle.finish()
    assert (seen[-1].bytes_done, seen[-1].files_done) == (100, 1)


async def test_a_repeat_after_a_crash_sends_only_the_missing_parts(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    """A server killed mid-upload leaves an unfinished multipart upload with some parts; the
    next attempt resumes it instead of sending the whole file again."""
    data = os.urandom(3 * PART_SIZE)
    (root / "work" / "big.bin").write_bytes(data)
    blob = area.blob(hashlib.sha256(data).hexdigest())
    started = await s3.create_multipart_upload(Bucket=BUCKET, Key=blob)
    await s3.upload_part(
        Bucket=BUCKET, Key=blob, UploadId=started["UploadId"], PartNumber=1, Body=data[:PART_SIZE]
    )
    received.calls.clear()
    manifest = await upload(s3, area, root)
    assert manifest.bytes_sent == 2 * PART_SIZE
    assert manifest.bytes_copied == PART_SIZE
    assert received.bytes(area.blobs) == 2 * PART_SIZE
    assert await read(s3, area.inputs + "big.bin") == data
    uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
    assert not uploads.get("Uploads")


async def test_a_repeat_keeps_inputs_in_place_and_drops_stale_ones(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    make_folder(root / "work")
    await upload(s3, area, root)
    (root / "work" / "data" / "b.csv").unlink()
    received.calls.clear()
    again = await upload(s3, area, root)
    assert again.bytes_sent == 0
    assert received.operations() == ["PutObject"]  # the manifest only
    listed = await s3.list_objects_v2(Bucket=BUCKET, Prefix=area.inputs)
    assert sorted(o["Key"][len(area.inputs) :] for o in listed["Contents"]) == [
        "analysis.ipynb",
        "data/a.csv",
        "lib/__init__.py",
        "lib/helpers.py",
    ]


async def test_a_blob_that_expires_before_its_copy_is_sent_again(
    s3: Any, area: StagingArea, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifecycle rule may delete a blob between the HeadObject that saw it and the copy."""
    data = b"expired content"
    (root / "work" / "main.py").write_bytes(data)
    blob = area.blob(hashlib.sha256(data).hexdigest())
    real_head = upload_module.head_object

    async def stale_head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
        if key == blob:  # as it was a moment ago
            return {"ContentLength": len(data)}
        return await real_head(client, bucket, key)

    monkeypatch.setattr(upload_module, "head_object", stale_head)
    manifest = await upload(s3, area, root)
    assert manifest.bytes_sent == len(data) and manifest.bytes_copied == 0
    assert await read(s3, area.inputs + "main.py") == data


async def test_over_the_cap_nothing_is_sent(
    s3: Any, area: StagingArea, root: Path, received: Received
) -> None:
    make_folder(root / "work")
    snapshot = snapshot_folder(root / "work", root)
    with pytest.raises(TooLarge, match=r"data/a\.csv \(29\d\.\d KiB\)"):
        await upload_inputs(s3, area, snapshot, 100_000, ignore_progress)
    assert received.calls == []


async def test_a_file_edited_during_the_upload_is_refused(
    s3: Any, area: StagingArea, root: Path
) -> None:
    make_folder(root / "work")
    snapshot = snapshot_folder(root / "work", root)
    (root / "work" / "lib" / "helpers.py").write_text("changed since the snapshot\n")
    with pytest.raises(FileChanged, match=r"lib/helpers\.py changed"):
        await upload_inputs(s3, area, snapshot, GiB, ignore_progress)


async def test_a_copy_above_copyobjects_limit_goes_in_parts(
    s3: Any, area: StagingArea, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UploadPartCopy above 5 GiB, tried with the limits scaled down (moto keeps objects in
    memory)."""
    monkeypatch.setattr(upload_module, "COPY_OBJECT_MAX", 6 << 20)
    monkeypatch.setattr(upload_module, "COPY_PART_SIZE", 5 << 20)
    data = os.urandom(12 << 20)
    (root / "work" / "big.bin").write_bytes(data)
    await upload(s3, area, root)
    key = area.inputs + "big.bin"
    assert await read(s3, key) == data
    head = await s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
