"""The EC2 backend's S3 mode (`c.EC2Backend.storage = "s3"`): a job's files travel through its
S3 area (`staging`) instead of a shared file system.

- Before the job is accepted, its folder's size check (`check`): a folder over
  `s3_max_upload_mib` is a 400, nothing launched. The check keeps nothing: a job only checked
  (a schedule's) or refused afterwards (the spending cap's 409) leaves no state here.
- During its launch, the folder's snapshot and the upload of its inputs (`start_upload`),
  concurrent with the instance's boot; the command is sent only once it is done (the backend
  terminates the instance if the upload fails or the job is stopped). The upload is
  idempotent: a restart uploads again.
- While it runs, the log follower (`s3_follow`): new log parts appended to the local log file,
  the exit code copied beside the job's other state files, where the monitor reads it.
- When it is stopped (or times out) while it runs, first a graceful end (`end_gracefully`,
  `s3_stop`): SIGTERM to the job, and a bounded wait for the worker to upload what it has.
- When it ends (`finish`: done, stopped, interrupted for good, timed out), its outputs brought
  back beside the script; a file the user changed meanwhile is kept, and a note on the job
  says where the job's version went.
- When it is removed (`forget`), its S3 area is deleted.

Transfers report `progress` on the job (`uploading_inputs`, `downloading_outputs`); the area's
bucket, prefix and owner are recorded in the job's handle, so a later change of the settings
never loses a job's files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ...aws.clients import AWSClients
from ...aws.command_s3 import S3Locations, build_s3_commands
from ...errors import BackendError
from ...models import Job, JobState, Outcome
from ...staging import (
    UPLOADING_INPUTS,
    InputManifest,
    Progress,
    StagingArea,
    check_folder_size,
    delete_area,
    download_outputs,
    ignore_progress,
    read_manifest,
    snapshot_folder,
    upload_inputs,
)
from . import s3_follow
from .job_instances import cleanup_note
from .s3_stop import GracefulEnd, lifetime_term_seconds
from .settings import EC2Settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
OUTPUTS_DONE = "s3_outputs_done"  # in the job's handle once its outputs are back
# Saves fields of one job: `record` during a launch, the store's update afterwards.
SaveFields = Callable[..., Awaitable[Any]]


class ProgressWriter:
    """Hands a transfer's progress to `save(progress=...)`, one write at a time: reports that
    come while a write is under way are merged into the next (the latest wins)."""

    def __init__(self, save: SaveFields) -> None:
        self._save = save
        self._latest: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def report(self, progress: Progress) -> None:
        self._latest = progress.to_dict()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._latest is not None:
            value, self._latest = self._latest, None
            try:
                await self._save(progress=value)
            except Exception as exc:  # progress is for display: never fail a transfer on it
                log.info("awsjobs: could not record a transfer's progress: %s", exc)

    async def close(self) -> None:
        """Wait for the last report, then clear the job's progress."""
        if self._task is not None:
            await self._task
        await self._save(progress=None)


def conflict_note(path: str, saved_as: str) -> str:
    return (
        f"{path} changed since the job started: the job's version is {PurePosixPath(saved_as).name}"
    )


class S3Mode:
    """One EC2 backend's S3 staging of its jobs' files."""

    def __init__(self, settings: EC2Settings, clients: AWSClients) -> None:
        self.settings = settings
        self.clients = clients
        self._uploads: dict[str, asyncio.Task[InputManifest]] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()  # outputs brought back (the handle says so too)
        # One look at a job's S3 files at a time: two would append the same log part twice.
        self._sync_locks: dict[str, asyncio.Lock] = {}
        self.end_gracefully = GracefulEnd(settings, clients, self.sync)

    # -- where a job's files are ----------------------------------------------------------

    def area(self, job: Job) -> StagingArea:
        """The job's area: as recorded in its handle, else from the settings now."""
        recorded = job.handle.get("s3_area") or {}
        return StagingArea(
            bucket=str(recorded.get("bucket") or self.settings.s3_bucket),
            prefix=str(recorded.get("prefix", self.settings.s3_prefix)),
            owner=str(recorded.get("owner") or self.settings.owner_area),
            job_id=job.id,
        )

    def folder(self, job: Job) -> Path:
        """The script's folder on the server: what is uploaded, where outputs come back."""
        return (Path(self.settings.root_dir) / job.path).parent

    def local_files(self, job: Job) -> s3_follow.LocalFiles:
        root = Path(self.settings.root_dir)
        return s3_follow.LocalFiles(root / job.log_path, self.settings.exit_code_path(job))

    def commands(self, job: Job, argv: list[str]) -> list[str]:
        """The worker's SSM script for this job (`aws/command_s3.py`)."""
        area = self.area(job)
        return build_s3_commands(
            job_id=job.id,
            argv=argv,
            locations=S3Locations(
                inputs=area.url(area.inputs),
                outputs=area.url(area.outputs),
                log_parts=area.url(area.log_parts),
                exit_code=area.url(area.exit_code),
            ),
            region=self.settings.region,
            env=job.env,
            attempt=job.attempt_number,
            watch_spot=job.spot,
            term_before_deadline=lifetime_term_seconds(self.settings, job),
        )

    @property
    def max_bytes(self) -> int:
        return self.settings.s3_max_upload_mib * MiB

    # -- before the launch, and during it --------------------------------------------------

    async def check(self, job: Job) -> None:
        """The folder's size, refused (`TooLarge`, a 400) when over the cap. Its files are
        neither read nor kept: the launch takes the snapshot (one per launch, one per
        schedule save), so a job that is never launched holds nothing."""
        root = Path(self.settings.root_dir)
        await asyncio.to_thread(check_folder_size, self.folder(job), root, self.max_bytes)

    def start_upload(self, job: Job, record: SaveFields) -> asyncio.Task[InputManifest]:
        """Upload the job's inputs in the background (the launch goes on meanwhile)."""
        task = asyncio.get_running_loop().create_task(
            self._upload(job, record), name=f"awsjobs-s3-upload-{job.id}"
        )
        self._uploads[job.id] = task
        task.add_done_callback(lambda _: self._uploads.pop(job.id, None))
        return task

    def cancel_upload(self, job_id: str) -> None:
        """A Stop: the upload goes no further (the launch then terminates its instance)."""
        task = self._uploads.get(job_id)
        if task is not None:
            task.cancel()

    async def _upload(self, job: Job, record: SaveFields) -> InputManifest:
        area = self.area(job)
        recorded = {"bucket": area.bucket, "prefix": area.prefix, "owner": area.owner}
        await record({"s3_area": recorded})
        root = Path(self.settings.root_dir)  # the folder as it is now (hashes cached on disk)
        snapshot = await asyncio.to_thread(
            snapshot_folder, self.folder(job), root, max_bytes=self.max_bytes
        )
        progress = ProgressWriter(lambda **fields: record(None, **fields))
        files = len(snapshot.entries)
        progress.report(Progress(UPLOADING_INPUTS, 0, snapshot.total_bytes, 0, files))  # at once
        try:
            manifest = await upload_inputs(
                await self.clients.s3(), area, snapshot, self.max_bytes, progress.report
            )
        finally:
            await progress.close()
        log.info(
            "awsjobs: job %s: inputs in %s (%d bytes sent, %d copied inside S3)",
            job.id,
            area.url(area.inputs),
            manifest.bytes_sent,
            manifest.bytes_copied,
        )
        return manifest

    async def uploaded(
        self,
        task: asyncio.Task[InputManifest],
        instance_id: str,
        terminate: Callable[[], Awaitable[str | None]],
    ) -> bool:
        """Wait for the upload before the command goes out. True once done; False when a Stop
        cancelled it; raises BackendError when it failed. Either way without it, the instance
        is terminated (`terminate`: confirmed, or why not)."""
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is None:
            return True
        problem = await terminate()
        if task.cancelled():
            return False
        error = task.exception()
        raise BackendError(
            f"uploading the job's files failed: {error}; {cleanup_note(instance_id, problem)}"
        ) from error

    # -- while it runs ---------------------------------------------------------------------

    async def sync(self, job: Job) -> int | None:
        """One look at the job's log parts and exit code (see `s3_follow`)."""
        lock = self._sync_locks.setdefault(job.id, asyncio.Lock())
        async with lock:
            s3 = await self.clients.s3()
            return await s3_follow.sync(s3, self.area(job), self.local_files(job))

    def follow(self, job: Job) -> None:
        """Follow the job's log until its exit code appears (or `unfollow`)."""
        current = self._followers.get(job.id)
        if current is not None and not current.done():
            return

        def failed(exc: Exception) -> None:
            log.info("awsjobs: job %s: following its log in S3: %s", job.id, exc)

        task = asyncio.get_running_loop().create_task(
            s3_follow.follow(lambda: self.sync(job), self.settings.s3_log_interval_seconds, failed),
            name=f"awsjobs-s3-log-{job.id}",
        )
        self._followers[job.id] = task

    async def unfollow(self, job_id: str) -> None:
        task = self._followers.pop(job_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- when it ends --------------------------------------------------------------------

    async def finish(self, job: Job, outcome: Outcome, save: SaveFields | None) -> None:
        """The rest of the log, then the outputs beside the script (not when the job is
        relaunched after an interruption: the next attempt goes on from them). Never raises:
        what could not be brought back is said in the job's notes; it stays in S3."""
        await self.unfollow(job.id)
        if outcome.state is JobState.INTERRUPTED and job.next_attempt_spot() is not None:
            return
        if job.handle.get(OUTPUTS_DONE) or job.id in self._finished:
            return  # brought back already (a Stop, then the wait it ended)
        area = self.area(job)
        try:
            await self.sync(job)
            notes = await self._download(job, area, save)
            self._finished.add(job.id)
            if save is not None:
                await save(job.id, handle={OUTPUTS_DONE: True})
        except Exception as exc:
            log.warning("awsjobs: job %s: bringing its outputs back failed: %s", job.id, exc)
            notes = [
                f"its outputs could not be brought back ({exc}); they are in "
                f"{area.url(area.outputs)} until the job is removed"
            ]
        if notes and save is not None:
            await save(job.id, notes=[*job.notes, *notes])

    async def _download(self, job: Job, area: StagingArea, save: SaveFields | None) -> list[str]:
        s3 = await self.clients.s3()
        try:
            manifest = await read_manifest(s3, area)
        except Exception:
            if not job.handle.get("command_id"):
                return []  # its command never went out: no outputs (maybe no inputs either)
            raise
        progress = None
        if save is not None:
            progress = ProgressWriter(lambda **fields: save(job.id, **fields))
        try:
            result = await download_outputs(
                s3,
                area,
                self.folder(job),
                manifest,
                job.id,
                progress.report if progress else ignore_progress,
            )
        finally:
            if progress is not None:
                await progress.close()
        notes = [conflict_note(path, saved_as) for path, saved_as in result.conflicts]
        if result.refused:
            notes.append(f"outputs not written (unsafe paths): {', '.join(result.refused)}")
        return notes

    async def forget(self, job: Job) -> None:
        """Delete the job's S3 area (its removal)."""
        await self.unfollow(job.id)
        self._sync_locks.pop(job.id, None)
        deleted = await delete_area(await self.clients.s3(), self.area(job))
        log.info("awsjobs: job %s removed; %d object(s) deleted from S3", job.id, deleted)

    async def close(self) -> None:
        for job_id in list(self._followers):
            await self.unfollow(job_id)
        for task in list(self._uploads.values()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
