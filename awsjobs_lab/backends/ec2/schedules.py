"""EC2 schedules (`schedules.remote.RemoteSchedules`): they live in EventBridge Scheduler and
start their workers with no server running.

- `put`: the schedule's worker is chosen when it is saved (the cheapest fitting type now, the
  first zone that has it: one RunInstances request is fixed for every firing), and written to
  AWS (`aws.scheduler`); saving it again re-chooses.
- `owner`: c.EC2Backend.owner, as the workers are tagged (the service's owner of EC2 schedules).
- `list`: the owner's schedules in AWS, with the job each runs read back from its boot script
  (so one made elsewhere the same way shows up).
- `import_runs`: the runs AWS started that the server has not seen (`scheduled_runs`).
- `delete`: the schedule, and its group when it was the last; nothing else was created.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
from typing import TYPE_CHECKING, Any

from ... import jobfiles
from ...aws import instances, scheduler, tags
from ...aws.errors import aws_errors
from ...aws.scheduled_boot import record_of_user_data, run_id_of_instance
from ...errors import BackendNotConfigured, InvalidRequest
from ...models import Job, now
from ...schedules.model import Schedule
from . import scheduled_runs
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
        if backend.storage != "efs":
            raise InvalidRequest(
                "EC2 schedules need the EFS storage (c.EC2Backend.storage = 'efs'): a "
                "scheduled run leaves its log and exit code on the shared file system."
            )
        scheduler.to_aws_cron(schedule.cron)  # InvalidRequest if AWS cannot express it

    # -- the schedules -----------------------------------------------------------------------

    async def put(self, schedule: Schedule, job: Job) -> None:
        self.check(schedule)
        backend = self.backend
        backend.validate(job)
        with aws_errors("choosing the scheduled worker's instance type"):
            candidates = await backend.choice.candidates_for(job)
            image = await backend.choice.image()
        request = run_instances_input(backend, schedule, job, candidates[0], image)
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
        runs = {  # by run id: those on disk, then those EC2 lists, with their instance
            run.run_id: run
            for run in await asyncio.to_thread(
                scheduled_runs.runs_on_disk, backend.root_dir, owner, known_job_ids
            )
        }
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
        root = self.backend.root_dir
        exit_code = await asyncio.to_thread(
            jobfiles.read_exit_code, jobfiles.exit_code_path(root, run.run_id)
        )
        finished = await asyncio.to_thread(scheduled_runs.finished_at_of, root, run.run_id)
        return scheduled_runs.job_of_run(run, self.backend.id, exit_code, finished)
