"""The S3 mode's log follower: a running job's log parts (`log/<attempt>-<part>`, written by
the worker every few seconds: `aws/command_s3.py`) appended to the job's local log file, so the
log endpoint and the panel read it as they read an EFS job's log; and its `exit_code` object
copied to the local state folder, where the monitor reads exit codes. The first part (the
worker writes "job started" first) marks the job started there too (its `running` phase).

One look (`sync`) costs one ListObjectsV2 of the new parts (`StartAfter` the last one taken)
and one GetObject of `exit_code` (404 while the job runs). Which part was taken last is kept
in `<state folder>/s3-log-cursor`, written right after the part is appended, so a server
restart goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ...aws.errors import aws_errors
from ...aws.s3 import is_not_found
from ...jobfiles import STARTED_FILE, read_exit_code
from ...staging import StagingArea

CURSOR_FILE = "s3-log-cursor"


@dataclass(frozen=True)
class LocalFiles:
    """Where one job's S3 files land on the server."""

    log: Path  # the job's log file (`log_path` under the server root)
    exit_code: Path  # `<state folder>/exit_code`

    @property
    def cursor(self) -> Path:
        return self.exit_code.parent / CURSOR_FILE

    @property
    def started(self) -> Path:
        return self.exit_code.parent / STARTED_FILE


async def _get_body(s3: Any, bucket: str, key: str) -> bytes | None:
    """An object's bytes, or None when there is no such key."""
    try:
        answer = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    async with answer["Body"] as body:
        data: bytes = await body.read()
    return data


def _append(files: LocalFiles, data: bytes, key: str) -> None:
    """Append a part to the log (never through a symlink), then remember it. Blocking."""
    files.log.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    with os.fdopen(os.open(files.log, flags, 0o644), "ab") as file:
        file.write(data)
    _write_atomically(files.cursor, key.encode())
    if not files.started.exists():
        files.started.touch()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def _read_cursor(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    return ""


async def sync(s3: Any, area: StagingArea, files: LocalFiles) -> int | None:
    """Take the job's new log parts and its exit code, if written; the exit code or None."""
    with aws_errors(f"following {area.url(area.log_parts)}"):
        after = await asyncio.to_thread(_read_cursor, files.cursor)
        # The exit code first: the worker writes it after its last log part, so parts listed
        # after it was seen are all there are.
        body = await _get_body(s3, area.bucket, area.exit_code)
        listing = await s3.list_objects_v2(
            Bucket=area.bucket, Prefix=area.log_parts, StartAfter=after or area.log_parts
        )
        for row in listing.get("Contents", []) or []:
            data = await _get_body(s3, area.bucket, row["Key"])
            if data is not None:
                await asyncio.to_thread(_append, files, data, row["Key"])
        if listing.get("IsTruncated"):
            return None  # more parts than one page: the next look takes the rest first
    if body is None:
        return None
    await asyncio.to_thread(_write_atomically, files.exit_code, body)
    return await asyncio.to_thread(read_exit_code, files.exit_code)


async def follow(
    look: Callable[[], Awaitable[int | None]],
    interval: float,
    on_error: Callable[[Exception], None],
) -> None:
    """Look every `interval` seconds until the exit code has been taken (or cancelled)."""
    while True:
        try:
            if await look() is not None:
                return
        except Exception as exc:  # S3 unreachable for a while: the next look tries again
            on_error(exc)
        await asyncio.sleep(interval)
