"""Bringing a job's outputs back beside its script, never overwriting the user's edits, and
removing a job's area.

Each object under `<area>/out/` is written to the same relative path in the job's folder, via
a temporary file in the destination's folder and a rename (a reader never sees half a file).
The server's file is replaced only when it is absent or unchanged since the snapshot (size and
mtime_ns as in the input manifest, or the same SHA-256); otherwise the user changed it while
the job ran, and the job's version lands beside it as `<stem>.<job id><suffix>`. A key that
would land outside the folder (`..`, an absolute path, a symlink on the way) or inside a folder
the snapshot never sends (`.git`: its hooks run code) is refused and reported, never written.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..aws.errors import aws_errors
from ..aws.s3 import abort_multipart_uploads, delete_keys, object_sizes
from ..safeopen import open_regular
from .area import StagingArea
from .lifecycle import put_lifecycle_rule as put_lifecycle_rule
from .manifest import InputManifest, ManifestFile
from .progress import DOWNLOADING_OUTPUTS, ProgressCallback, ProgressThrottle
from .snapshot import ALWAYS_SKIPPED, READ_CHUNK, sha256_of
from .transfer import run_bounded

log = logging.getLogger(__name__)

FILE_CONCURRENCY = 4
TEMP_MARK = ".awsjobs-download-"  # + random: a file being downloaded


@dataclass
class OutputsResult:
    written: list[str] = field(default_factory=list)  # relative paths written in place
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, saved as)
    bytes: int = 0  # bytes downloaded
    unchanged: list[str] = field(default_factory=list)  # the same content was already there
    refused: list[str] = field(default_factory=list)  # keys that would land somewhere unsafe
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not writable

    def sort(self) -> None:
        """Each list in path order: files land concurrently, in any order."""
        for paths in (self.written, self.conflicts, self.unchanged, self.refused, self.failed):
            paths.sort()


async def download_outputs(
    s3: Any,
    area: StagingArea,
    folder: Path,
    manifest: InputManifest,
    job_id: str,
    on_progress: ProgressCallback,
) -> OutputsResult:
    """Write every object under `area.outputs` into `folder` (see the module's docstring)."""
    sizes = await object_sizes(s3, area.bucket, area.outputs)
    throttle = ProgressThrottle(DOWNLOADING_OUTPUTS, sum(sizes.values()), len(sizes), on_progress)
    result = OutputsResult()
    real_folder = await asyncio.to_thread(folder.resolve)
    fetch = functools.partial(_fetch_one, s3, area, real_folder, manifest, job_id, throttle, result)
    await run_bounded([functools.partial(fetch, key) for key in sorted(sizes)], FILE_CONCURRENCY)
    throttle.finish()
    result.sort()
    return result


async def _fetch_one(
    s3: Any,
    area: StagingArea,
    folder: Path,
    manifest: InputManifest,
    job_id: str,
    throttle: ProgressThrottle,
    result: OutputsResult,
    key: str,
) -> None:
    rel = key[len(area.outputs) :]
    dest = await asyncio.to_thread(safe_destination, folder, rel)
    if dest is None:
        log.warning("job %s: output %s refused: not a safe path under %s", job_id, key, folder)
        result.refused.append(rel)
        throttle.add(files=1)
        return
    temp = dest.with_name(f"{TEMP_MARK}{secrets.token_hex(6)}")
    try:
        sha = await _download_to(s3, area, key, temp, throttle, result)
        saved_as = await asyncio.to_thread(_place, temp, dest, manifest.files.get(rel), sha, job_id)
    except OSError as exc:  # this file cannot be written (permissions, disk full): the others may
        log.warning("job %s: output %s not written: %s", job_id, rel, exc)
        result.failed.append((rel, exc.strerror or str(exc)))
    else:
        if saved_as is None:
            result.written.append(rel)
        elif saved_as == "":
            result.unchanged.append(rel)
        else:
            result.conflicts.append((rel, (Path(rel).parent / saved_as).as_posix()))
    finally:
        await asyncio.to_thread(temp.unlink, True)
    throttle.add(files=1)


def safe_destination(folder: Path, rel: str) -> Path | None:
    """Where output `rel` goes under `folder` (a real path), its folders created; None when
    the key is not a plain relative path, crosses a symlink or a non-folder, goes into a
    folder the snapshot never sends, or names something other than a regular file."""
    parts = rel.split("/")
    if not rel or "\\" in rel or "\x00" in rel:
        return None
    if any(part in ("", ".", "..") or part in ALWAYS_SKIPPED for part in parts):
        return None
    current = folder
    for part in parts[:-1]:
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            pass
        except OSError:
            return None
        if not stat.S_ISDIR(os.lstat(current).st_mode):  # a symlink or a file: refused
            return None
    dest = current / parts[-1]
    try:
        mode = os.lstat(dest).st_mode
    except FileNotFoundError:
        return dest
    return dest if stat.S_ISREG(mode) else None


async def _download_to(
    s3: Any,
    area: StagingArea,
    key: str,
    temp: Path,
    throttle: ProgressThrottle,
    result: OutputsResult,
) -> str:
    """Object `key` written to the new file `temp`; its SHA-256 (hex)."""
    digest = hashlib.sha256()
    fd = await asyncio.to_thread(open_regular, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with aws_errors(f"downloading {area.url(key)}"):
            answer = await s3.get_object(Bucket=area.bucket, Key=key)
            async with answer["Body"] as body:
                while chunk := await body.read(READ_CHUNK):
                    digest.update(chunk)
                    await asyncio.to_thread(_write_all, fd, chunk)
                    result.bytes += len(chunk)
                    throttle.add(len(chunk))
    finally:
        os.close(fd)
    return digest.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _place(temp: Path, dest: Path, known: ManifestFile | None, sha: str, job_id: str) -> str | None:
    """Move the downloaded `temp` into place. None: written at `dest`; '': `dest` already
    held this content (nothing written); a file name: saved beside, under that name."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        os.replace(temp, dest)
        return None
    if known is not None and (st.st_size, st.st_mtime_ns) == (known.size, known.mtime_ns):
        current, unchanged = known.sha256, True
    else:
        current = _file_sha256(dest)
        unchanged = known is not None and current == known.sha256
    if sha == current:
        return ""
    if unchanged:
        os.chmod(temp, stat.S_IMODE(st.st_mode))  # the user's file keeps its permissions
        os.replace(temp, dest)
        return None
    beside = dest.with_name(f"{dest.stem}.{job_id}{dest.suffix}")
    os.replace(temp, beside)
    return beside.name


def _file_sha256(path: Path) -> str:
    with os.fdopen(open_regular(path), "rb") as f:
        return sha256_of(f)


async def delete_area(s3: Any, area: StagingArea) -> int:
    """Delete everything under `area.root` (inputs, outputs, log, exit code, manifest, and
    unfinished multipart uploads); the number of objects deleted. The owner's `blobs/` are
    shared with other jobs and left to the lifecycle rule."""
    await abort_multipart_uploads(s3, area.bucket, area.root)
    keys = sorted(await object_sizes(s3, area.bucket, area.root))
    return await delete_keys(s3, area.bucket, keys)


__all__ = [
    "OutputsResult",
    "delete_area",
    "download_outputs",
    "put_lifecycle_rule",
    "safe_destination",
]
