"""EC2 schedules (`schedules.remote.RemoteSchedules`): they live in EventBridge Scheduler and
start their workers with no server running.

- `put`: the schedule's worker is chosen when it is saved (the cheapest fitting type now, the
  first zone that has it: one RunInstances request is fixed for every firing), and written to
  AWS (`aws.scheduler`); saving it again re-chooses. In S3 mode the script's folder is uploaded
  first, to the schedule's area (`scheduled_s3`): a run uses the files as of the last save.
- `owner`: c.EC2Backend.owner, as the workers are tagged (the service's owner of EC2 schedules).
- `list`: the owner's schedules in AWS, with the job each runs read back from its boot script
  (so one made elsewhere the same way shows up).
- `import_runs`: the runs AWS started that the server has not seen (`scheduled_runs`; in S3
  mode also by their areas, a finished one with its log and outputs brought back).
- `delete`: the schedule, its group when it was the last, and its S3 inputs; nothing else was
  created.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
from typing import TYPE_CHECKING, Any

from ... import jobfiles
from ...aws import instances, scheduler, tags
from ...aws.errors import aws_errors
from ...aws.scheduled_boot import record_of_user_data, run_id_of_instance
from ...errors import BackendNotConfigured
from ...models import Job, now
from ...schedules.model import Schedule
from . import scheduled_runs, scheduled_s3
from .scheduled_runs import Run
from .scheduled_worker import run_instances_input

if TYPE_CHECKING:
    from .backend import EC2Backend

ROLE_SETTING = "c.EC2Backend.scheduler_role_arn"


def _record_of_request(run_instances: dict[str, Any]) -> dict[str, Any] | None:
    """The run record a schedule's RunInstances request carries in its boot script."""
    try:
        script = base64.b64decode(str(run_instances.get("UserData", ""))).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return record_of_user_data(script)


class EC2Schedules:
    """The EC2 backend's schedules in EventBridge Scheduler."""

    def __init__(self, backend: EC2Backend) -> None:
        self.backend = backend
        self._runs_in_s3 = scheduled_s3.RunsInS3(backend)

    @property
    def owner(self) -> str:
        """c.EC2Backend.owner as its workers carry it in `awsjobs:owner` (worker.job_tags):
        the schedules' group, tags and run records, and the import, all use this one."""
        return self.backend.owner_tag or tags.UNKNOWN_OWNER

    async def _client(self) -> Any:
        return await self.backend.clients.get("scheduler")

    # -- checks ------------------------------------------------------------------------------

    def check(self, schedule: Schedule) -> None:
        backend = self.backend
        backend.require_configured()
        if not backend.scheduler_role_arn:
            raise BackendNotConfigured(
                f"EC2 schedules are not configured: set {ROLE_SETTING}, the IAM role "
                "EventBridge Scheduler starts the workers with (README, 'Schedules on EC2')."
            )
        scheduler.to_aws_cron(schedule.cron)  # InvalidRequest if AWS cannot express it

    # -- the schedules -----------------------------------------------------------------------

    async def put(self, schedule: Schedule, job: Job) -> None:
        self.check(schedule)
        backend = self.backend
        backend.validate(job)
        job.storage = backend.storage
        with aws_errors("choosing the scheduled worker's instance type"):
            candidates = await backend.choice.candidates_for(job)
            image = await backend.choice.image()
        request = run_instances_input(backend, schedule, job, candidates[0], image)
        try:
            if backend.uses_s3:  # a run needs nothing from the server: its files go first
                s3 = await backend.clients.s3()
                await scheduled_s3.upload_schedule_inputs(backend.s3mode, s3, schedule, job)
            await self._put_definition(schedule, request)
        except Exception:
            if backend.uses_s3:
                await self._forget_inputs_of_new(schedule)
            raise

    async def _forget_inputs_of_new(self, schedule: Schedule) -> None:
        """A schedule that could not be created in AWS leaves no inputs behind (one that
        exists keeps its area: its runs use it)."""
        with contextlib.suppress(Exception):
            found = await scheduler.get(await self._client(), schedule.owner, schedule.name)
            if found is None:
                await self._delete_inputs(schedule.owner, schedule.name)

    async def _put_definition(self, schedule: Schedule, request: dict[str, Any]) -> None:
        backend = self.backend
        definition = scheduler.Definition(
            name=schedule.name,
            owner=schedule.owner,
            cron=schedule.cron,
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            run_instances=request,
            role_arn=backend.scheduler_role_arn,
            start_at=schedule.start_at,
            end_at=schedule.end_at,
        )
        with aws_errors(f"saving schedule {schedule.name} in EventBridge Scheduler"):
            await scheduler.put(await self._client(), definition, now())

    async def delete(self, owner: str, name: str) -> None:
        with aws_errors(f"deleting schedule {name} from EventBridge Scheduler"):
            await scheduler.delete(await self._client(), owner, name)
        if self.backend.s3_bucket:  # its inputs (S3 mode; none to find otherwise)
            await self._delete_inputs(owner, name)

    async def _delete_inputs(self, owner: str, name: str) -> None:
        backend = self.backend
        deleted = await scheduled_s3.delete_schedule_inputs(
            backend, await backend.clients.s3(), owner, name
        )
        if deleted:
            backend.log.info("awsjobs: schedule %s: %d input object(s) deleted", name, deleted)

    async def list(self, owner: str) -> builtins.list[Schedule]:
        with aws_errors("listing the schedules in EventBridge Scheduler"):
            found = await scheduler.list_ours(await self._client(), owner)
        return [self._schedule(owner, f) for f in found]

    def _schedule(self, owner: str, found: scheduler.Found) -> Schedule:
        record = _record_of_request(found.run_instances)
        request = dict(record.get("request") or {}) if record else {}
        request.setdefault("backend", self.backend.id)
        return Schedule(
            name=found.name,
            owner=owner,
            cron=found.cron,
            timezone=found.timezone,
            job=request,
            enabled=found.enabled,
            start_at=found.start_at,
            end_at=found.end_at,
            error=None if record else "its worker's boot script is not one this tool wrote",
        )

    # -- the runs ----------------------------------------------------------------------------

    async def import_runs(self, owner: str, known_job_ids: set[str]) -> builtins.list[Job]:
        backend = self.backend
        with aws_errors("looking for the schedules' runs on EC2"):
            listed = await instances.describe_instances(
                await backend.clients.ec2(),
                [
                    {"Name": "tag-key", "Values": [tags.SCHEDULE]},
                    *instances.managed_filters(backend.owner_tag),
                ],
            )
        runs = {  # by run id: those on disk or in S3, then those EC2 lists, with their instance
            run.run_id: run
            for run in await asyncio.to_thread(
                scheduled_runs.runs_on_disk, backend.root_dir, owner, known_job_ids
            )
        }
        if backend.uses_s3:
            found = await self._runs_in_s3.find(await backend.clients.s3(), owner, known_job_ids)
            runs.update((run.run_id, run) for run in found)
        for iid, instance in listed.items():
            run_id = run_id_of_instance(iid)
            if run_id in known_job_ids:
                continue
            run = runs.get(run_id)
            if run is None and instances.state_of(instance) not in instances.GONE:
                # Booting: its worker has not written its record yet. (A gone one without a
                # record never mounted EFS and ran nothing, or its job has been deleted.)
                run = await self._run_before_its_record(owner, iid, instance)
            if run is not None:
                runs[run_id] = Run(run_id, run.record, instance)
        return [await self._job(run) for run in runs.values()]

    async def _run_before_its_record(
        self, owner: str, iid: str, instance: dict[str, Any]
    ) -> Run | None:
        """A run whose worker has not written its record yet: the record its schedule's boot
        script carries, completed."""
        name = tags.tags_of(instance).get(tags.SCHEDULE, "")
        with aws_errors(f"reading schedule {name}"):
            found = await scheduler.get(await self._client(), owner, name)
        record = _record_of_request(found.run_instances) if found else None
        if record is None:
            return None
        run_id = run_id_of_instance(iid)
        started = instances.launch_time(instance) or now()
        return Run(run_id, scheduled_runs.completed_record(record, run_id, iid, started))

    async def _job(self, run: Run) -> Job:
        if scheduled_s3.is_s3_run(run):
            return await self._s3_job(run)
        root = self.backend.root_dir
        exit_code = await asyncio.to_thread(
            jobfiles.read_exit_code, jobfiles.exit_code_path(root, run.run_id)
        )
        finished = await asyncio.to_thread(scheduled_runs.finished_at_of, root, run.run_id)
        return scheduled_runs.job_of_run(run, self.backend.id, exit_code, finished)

    async def _s3_job(self, run: Run) -> Job:
        """A run in S3 mode: its log and exit code as far as they got; finished, its outputs
        beside the script too (running, the driver watches it as any S3 job)."""
        backend = self.backend
        running = scheduled_runs.job_of_run(run, backend.id, None, now())
        exit_code = await backend.s3mode.sync(running)
        if exit_code is None:
            return running
        s3 = await backend.clients.s3()
        finished = await scheduled_s3.finished_at(s3, backend.s3mode.area(running))
        job = scheduled_runs.job_of_run(run, backend.id, exit_code, finished)
        await scheduled_s3.bring_back(backend.s3mode, job)
        return job
