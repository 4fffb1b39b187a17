"""A job's input manifest: what the snapshot sent (path → size, mtime_ns, sha256), stored
beside the job's inputs as `manifest.json`. Downloading outputs compares the server's files
with it to tell a file the user changed since the job started from one the job may overwrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..aws.errors import aws_errors
from ..aws.s3 import read_object
from ..errors import BackendError
from .area import StagingArea
from .snapshot import Snapshot

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestFile:
    size: int
    mtime_ns: int
    sha256: str


@dataclass
class InputManifest:
    files: dict[str, ManifestFile]
    # What one upload_inputs call moved: bytes sent over the network (PutObject, UploadPart)
    # and bytes whose content was already in S3 (copied there, or already in place).
    bytes_sent: int = 0
    bytes_copied: int = 0
    files_sent: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, snapshot: Snapshot) -> InputManifest:
        return cls({e.path: ManifestFile(e.size, e.mtime_ns, e.sha256) for e in snapshot.entries})

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> str:
        files = {
            path: {"size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256}
            for path, f in sorted(self.files.items())
        }
        return json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> InputManifest:
        """The manifest `to_json` wrote; ValueError when it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("not an input manifest")
        files = {}
        for path, row in data["files"].items():
            if not isinstance(row, dict):
                raise ValueError(f"bad manifest row for {path!r}")
            files[str(path)] = ManifestFile(
                int(row["size"]), int(row["mtime_ns"]), str(row["sha256"])
            )
        return cls(files)


async def write_manifest(s3: Any, area: StagingArea, manifest: InputManifest) -> None:
    with aws_errors(f"writing {area.url(area.manifest)}"):
        await s3.put_object(
            Bucket=area.bucket,
            Key=area.manifest,
            Body=manifest.to_json().encode(),
            ContentType="application/json",
        )


async def read_manifest(s3: Any, area: StagingArea) -> InputManifest:
    """The manifest of `area`'s inputs (after a server restart, the outputs need it)."""
    text = await read_object(s3, area.bucket, area.manifest)
    try:
        return InputManifest.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"{area.url(area.manifest)} is not an input manifest: {exc}") from exc
