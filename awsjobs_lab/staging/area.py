"""Where one job's files live in S3: the keys of its staging area, derived once.

Every key is under `<prefix><owner>/`: the job's own area (`<job id>/in/`, `out/`, `log/`,
`exit_code`, `manifest.json`) is deleted with the job; `blobs/` holds the owner's file contents
by SHA-256, shared by all their jobs (so an unchanged file is copied inside S3, never sent
twice) and left to the bucket's lifecycle rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..aws.tags import UNKNOWN_OWNER, user_name
from ..patterns import JOB_ID

DEFAULT_PREFIX = "awsjobs/"
# The characters kept in an owner's key segment; anything else becomes '_'.
_NOT_KEY_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def normalise_prefix(prefix: str) -> str:
    """`prefix` as a key prefix: no leading '/', one trailing '/' ('' is the bucket's root)."""
    stripped = prefix.strip().strip("/")
    return f"{stripped}/" if stripped else ""


def owner_segment(owner: str) -> str:
    """`owner` as one key segment: only letters, digits, '.', '_' and '-'; never empty, '.'
    or '..' (a segment S3 consoles and `aws s3 sync` would treat as a path step)."""
    safe = _NOT_KEY_SAFE.sub("_", owner.strip())[:64]
    return UNKNOWN_OWNER if safe.strip(".") == "" else safe


@dataclass(frozen=True)
class StagingArea:
    """One job's keys. `prefix` and `owner` are normalised on construction, so
    `StagingArea(bucket, "awsjobs", "Jane Doe", job_id).root` is
    `"awsjobs/Jane_Doe/<job id>/"`."""

    bucket: str
    prefix: str
    owner: str
    job_id: str

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("a staging area needs a bucket")
        if not JOB_ID.match(self.job_id):
            raise ValueError(f"not a job id: {self.job_id!r}")
        # Frozen: normalised in place once, so every derived key agrees.
        object.__setattr__(self, "prefix", normalise_prefix(self.prefix))
        object.__setattr__(self, "owner", owner_segment(self.owner))

    @classmethod
    def for_job(
        cls, bucket: str, job_id: str, prefix: str = DEFAULT_PREFIX, owner: str | None = None
    ) -> StagingArea:
        """The area of `job_id`, owned by `owner` (default: the OS user running the server)."""
        return cls(bucket=bucket, prefix=prefix, owner=owner or user_name(), job_id=job_id)

    @property
    def owner_root(self) -> str:
        return f"{self.prefix}{self.owner}/"

    @property
    def root(self) -> str:
        return f"{self.owner_root}{self.job_id}/"

    @property
    def inputs(self) -> str:
        return self.root + "in/"

    @property
    def outputs(self) -> str:
        return self.root + "out/"

    @property
    def log_parts(self) -> str:
        return self.root + "log/"

    @property
    def exit_code(self) -> str:
        return self.root + "exit_code"

    @property
    def manifest(self) -> str:
        return self.root + "manifest.json"

    @property
    def blobs(self) -> str:
        return self.owner_root + "blobs/"

    def blob(self, sha256: str) -> str:
        """The key of the content whose SHA-256 (hex) is `sha256`."""
        return self.blobs + sha256

    def url(self, key: str) -> str:
        """`s3://bucket/key`, for messages and the worker's commands."""
        return f"s3://{self.bucket}/{key}"
