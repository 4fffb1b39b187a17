"""Staging a job's files through S3 (the EC2 backend's `storage = "s3"`): the snapshot of its
folder, the upload of its inputs with content-addressed deduplication, the download of its
outputs beside the script, and the cleanup of its area. No job states here: the backend and
the driver decide when each step runs."""

from __future__ import annotations

from .area import DEFAULT_PREFIX, StagingArea
from .download import OutputsResult, delete_area, download_outputs, put_lifecycle_rule
from .manifest import InputManifest, ManifestFile, read_manifest
from .progress import (
    DOWNLOADING_OUTPUTS,
    UPLOADING_INPUTS,
    Progress,
    ProgressCallback,
    ignore_progress,
)
from .snapshot import Snapshot, SnapshotEntry, TooLarge, check_folder_size, snapshot_folder
from .upload import FileChanged, upload_inputs

__all__ = [
    "DEFAULT_PREFIX",
    "DOWNLOADING_OUTPUTS",
    "UPLOADING_INPUTS",
    "FileChanged",
    "InputManifest",
    "ManifestFile",
    "OutputsResult",
    "Progress",
    "ProgressCallback",
    "Snapshot",
    "SnapshotEntry",
    "StagingArea",
    "TooLarge",
    "check_folder_size",
    "delete_area",
    "download_outputs",
    "ignore_progress",
    "put_lifecycle_rule",
    "read_manifest",
    "snapshot_folder",
    "upload_inputs",
]
