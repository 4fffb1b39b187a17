"""EC2 + SSM backend: each job runs on its own freshly launched instance.

Launch: choose the cheapest instance type that fits (`choice`), `RunInstances` with the
worker's boot script (`aws.userdata`: EFS mount, lifetime deadline) and
`InstanceInitiatedShutdownBehavior=terminate` (`aws.launch`), record the instance id at once,
then `SendCommand` the job's script while its SSM agent registers (`command_sender`). Status:
one monitor loop for every job (`aws.monitor`). Stop: `CancelCommand` (best effort) +
`TerminateInstances`, confirmed (`aws.instances`); an S3 job gets SIGTERM and a grace first
(`s3_stop`). After a restart, the job's instance looked at again (`reattach`). Settings and
checks: `settings`; the instance inventory (preview, list, terminate ours, orphans): `inventory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from ... import phases
from ...aws.catalog import Catalog, OnDemandPrices
from ...aws.clients import AWSClients
from ...aws.errors import aws_errors
from ...aws.launch import Launcher, UncertainLaunch
from ...aws.monitor import Monitor
from ...errors import BackendError
from ...gpus import NO_GPU, GpuNeed
from ...jobfiles import read_progress
from ...models import Job, JobState, Outcome
from ...runners import build_command
from ..base import RecordHandle
from . import worker
from .choice import InstanceChoice
from .command_sender import CommandSender
from .inventory import Inventory
from .job_instances import JobInstances
from .reattach import Reattacher
from .s3_resume import resume_launch
from .s3mode import S3Mode
from .scheduled_worker import SELF_RUN
from .schedules import EC2Schedules
from .settings import EC2Settings

STOPPED = Outcome(JobState.STOPPED, error="stopped on request")


class EC2Backend(EC2Settings):
    """Runs each job on its own freshly launched EC2 instance, driven through SSM."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: AWSClients | None = None
        self._choice: InstanceChoice | None = None
        self._inventory: Inventory | None = None
        self._job_instances: JobInstances | None = None
        self._launcher: Launcher | None = None
        self._command_sender: CommandSender | None = None
        self._reattacher: Reattacher | None = None
        self._monitor: Monitor | None = None
        self._stopping: set[str] = set()
        self._started = False  # start() was called: the monitor loop runs
        self._warmup: asyncio.Task[None] | None = None
        self._s3mode: S3Mode | None = None
        # Its schedules live in EventBridge Scheduler and fire without this server.
        self.capabilities = dataclasses.replace(self.capabilities, schedules=EC2Schedules(self))

    # -- the AWS helpers, each made on first use ---------------------------------------------

    @property
    def clients(self) -> AWSClients:
        if self._clients is None:
            self._clients = AWSClients(
                region=self.region,
                endpoint_url=self.endpoint_url,
                pricing_endpoint_url=self.pricing_endpoint_url,
            )
        return self._clients

    @property
    def choice(self) -> InstanceChoice:
        if self._choice is None:
            self._choice = InstanceChoice(self, self.clients)
        return self._choice

    @property
    def catalog(self) -> Catalog:
        return self.choice.catalog

    @property
    def prices(self) -> OnDemandPrices:
        return self.choice.prices

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = Inventory(self, self.clients, self.choice)
        return self._inventory

    @property
    def job_instances(self) -> JobInstances:
        if self._job_instances is None:
            self._job_instances = JobInstances(self, self.clients)
        return self._job_instances

    @property
    def launcher(self) -> Launcher:
        if self._launcher is None:
            self._launcher = Launcher(
                self.clients,
                max_concurrent=self.max_concurrent_run_instances,
                max_attempts=self.max_launch_attempts,
                terminate=self.job_instances.terminate_until_confirmed,
                uncertain_pause=self.cleanup_retry_seconds,
            )
        return self._launcher

    @property
    def command_sender(self) -> CommandSender:
        """SendCommand of a job's script while its agent registers: `command_sender.py`."""
        if self._command_sender is None:
            self._command_sender = CommandSender(
                self, self.clients, self.job_instances, stopping=self._stopping.__contains__
            )
        return self._command_sender

    @property
    def reattacher(self) -> Reattacher:
        """A job's instances looked at again after a restart: `reattach.py`."""
        if self._reattacher is None:
            self._reattacher = Reattacher(
                self, self.job_instances, lambda job, iid: resume_launch(self, job, iid)
            )
        return self._reattacher

    @property
    def s3mode(self) -> S3Mode:
        """Jobs whose files travel through S3 (storage "s3"): `s3mode.py`."""
        if self._s3mode is None:
            self._s3mode = S3Mode(self, self.clients)
        return self._s3mode

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            self._monitor = Monitor(
                self.clients,
                owner=self.owner_tag,
                interval=self.monitor_interval_seconds,
                max_backoff=self.monitor_max_backoff_seconds,
                command_check_interval=self.command_check_interval_seconds,
                command_checks_per_cycle=self.command_checks_per_cycle,
                exit_grace=self.exit_code_grace_seconds,
                consistency_window=self.consistency_window_seconds,
                report_phase=self._report_phase,
            )
        return self._monitor

    async def _report_phase(self, job_id: str, phase: str) -> None:
        await self.phases.report(job_id, phase)  # the driver's recorder, set after __init__

    # -- life cycle of the backend -----------------------------------------------------------

    async def start(self) -> None:
        # No AWS call is awaited here: the server must start even without credentials or
        # network. On-demand prices are warmed in the background so the first preview is fast.
        self._started = True
        self.monitor.start()
        if self.is_configured():
            self.inventory.start_sweeping()  # instances past their deadline, periodically
        if self.is_configured() and self.warm_prices_on_start:
            self._warmup = asyncio.get_running_loop().create_task(
                self.choice.warm_prices(), name="awsjobs-ec2-prices"
            )

    async def close(self) -> None:
        warmup, self._warmup = self._warmup, None
        if warmup is not None and not warmup.done():
            warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warmup
        if self._monitor is not None:
            await self._monitor.close()
        if self._s3mode is not None:
            await self._s3mode.close()
        if self._inventory is not None:
            await self._inventory.close()
        if self._clients is not None:
            await self._clients.close()

    # -- the instance inventory (base.InstanceInventory) -------------------------------------

    async def preview(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None = None,
        gpus: GpuNeed = NO_GPU,
    ) -> dict[str, Any]:
        return await self.inventory.preview(
            memory_gib=memory_gib, cpus=cpus, spot=spot, instance_type=instance_type, gpus=gpus
        )

    async def list_instances(self) -> list[dict[str, Any]]:
        return await self.inventory.list_instances()

    async def terminate_instances(self, ids: Iterable[str]) -> list[str]:
        return await self.inventory.terminate_instances(ids)

    async def find_orphans(self, active_job_ids: set[str]) -> list[dict[str, Any]]:
        return await self.inventory.find_orphans(active_job_ids)

    async def reconcile(self, active_jobs: Iterable[Job | str]) -> dict[str, list[dict[str, Any]]]:
        return await self.inventory.reconcile(active_jobs)

    async def check_request(self, job: Job) -> None:
        """Optional async part of validation (the service may await it before accepting a
        job, to answer 400): a requested instance type must exist and be allowed, and some
        type must have the GPUs asked for. In S3 mode, the folder's size (nothing kept): over
        the upload cap, a 400 (nothing launched)."""
        self.validate(job)
        job.storage = self.storage
        if self.uses_s3:
            await self.s3mode.check(job)
        if job.requested_instance_type or job.gpu_need.wanted:
            await self.preview(
                memory_gib=job.memory_gib,
                cpus=job.cpus,
                spot=job.spot,
                instance_type=job.requested_instance_type,
                gpus=job.gpu_need,
            )

    # -- launch ------------------------------------------------------------------------------

    def request_stop(self, job_id: str) -> None:
        """Make an in-flight launch of this job give up as soon as possible (it terminates
        what it launched). `stop()` does this too; the service may call this early."""
        self._stopping.add(job_id)
        if self._monitor is not None:
            self._monitor.mark_stopping(job_id)
        if self._s3mode is not None:
            self._s3mode.cancel_upload(job_id)

    async def launch(self, job: Job, record: RecordHandle) -> None:
        if job.storage != "s3":
            return await self._launch(job, record, None)
        upload = self.s3mode.start_upload(job, record)  # while the instance boots
        try:
            await self._launch(job, record, upload)
        finally:
            upload.cancel()  # the launch failed before the command: no more bytes for it

    async def _launch(
        self, job: Job, record: RecordHandle, upload: asyncio.Task[Any] | None
    ) -> None:
        self.validate(job)
        await self.phases.report(job.id, phases.REQUESTING)
        argv = build_command(job, python=self.worker_python)
        commands = (
            self.s3mode.commands(job, argv) if upload else worker.job_commands(self, job, argv)
        )
        user_data = worker.user_data(self, job)
        await asyncio.to_thread(worker.prepare_files, self, job)
        with aws_errors("choosing an instance type failed"):
            candidates = await self.choice.candidates(
                memory_gib=job.memory_gib,
                cpus=job.cpus,
                spot=job.spot,
                instance_type=job.requested_instance_type,
                gpus=job.gpu_need,
            )
            image = await self.choice.image()
        try:
            instance, chosen = await self.launcher.run_first_available(
                worker.launch_key(job),  # per attempt: a relaunch gets tokens of its own
                candidates,
                lambda candidate, attempt: worker.run_parameters(
                    self, job, candidate, user_data, attempt, image
                ),
                stopping=lambda: job.id in self._stopping,
                remember=lambda attempt: record({"launch_attempt": attempt}),
            )
        except UncertainLaunch as exc:
            # An instance may exist that nobody knows of: find it by tag before failing.
            found = await self.job_instances.sweep(job, since=exc.attempted_at)
            raise BackendError(f"{exc}; {found}") from exc
        iid = instance["InstanceId"]
        launched_at = time.time()
        try:
            await record(
                {
                    "instance_id": iid,
                    "availability_zone": chosen.availability_zone,
                    "subnet_id": chosen.subnet_id,
                    "spot": chosen.spot,
                    "price_source": chosen.price_source,
                },
                instance_type=chosen.instance_type,
                hourly_price=chosen.hourly_price,
                command=argv,
                started_at=launched_at,
            )
        except BaseException:
            # Never leave an instance nobody knows about.
            await self.job_instances.terminate_until_confirmed([iid], job.id)
            raise
        if job.id in self._stopping:
            await self.job_instances.terminate_quietly([iid], job.id)
            return  # stop() confirms the termination
        await self.phases.report(job.id, phases.BOOTING)
        if upload is not None and not await self.s3mode.uploaded(
            upload, iid, lambda: self.job_instances.terminate_until_confirmed([iid], job.id)
        ):
            return  # stopped while uploading: its instance is terminated
        command_id = await self.command_sender.send(job, iid, commands, launched_at)
        if command_id is not None:
            await record({"command_id": command_id})
            await self.phases.report(job.id, phases.PREPARING)

    # -- wait, stop, reattach ----------------------------------------------------------------

    async def wait(self, job: Job) -> Outcome:
        if job.storage != "s3":
            return await self._wait_instance(job)
        self.s3mode.follow(job)  # its log, live
        try:
            outcome = await self._wait_instance(job)
        except BaseException:
            await self.s3mode.unfollow(job.id)
            raise
        if job.id not in self._stopping:  # (a Stop brings the outputs back itself)
            await self.s3mode.finish(job, outcome, self.save_job)
        return outcome

    async def forget(self, job: Job) -> None:
        if job.storage == "s3":
            await self.s3mode.forget(job)

    async def _wait_instance(self, job: Job) -> Outcome:
        if job.id in self._stopping:
            return STOPPED
        iid = job.instance_id
        if not iid:
            return Outcome(JobState.FAILED, error="no instance was launched for this job")
        future = self.monitor.watch(
            job_id=job.id,
            instance_id=iid,
            command_id=job.handle.get("command_id"),
            exit_code_path=self.exit_code_path(job),
            lifetime_seconds=job.deadline(0.0, unit_seconds=self.lifetime_unit_seconds),
            started_at=job.started_at or job.created_at,
        )
        if self._started:
            self.monitor.start()  # (again, if it had ended)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                self.monitor.unwatch(job.id)
            raise

    async def stop(self, job: Job) -> None:
        """Cancel the command (best effort), terminate every instance of the job (also one
        whose RunInstances is still in flight) and confirm. Idempotent."""
        self.request_stop(job.id)
        command_id = job.handle.get("command_id")
        if job.storage == "s3":  # SIGTERM first: what it made goes to S3 (bounded wait)
            await self.s3mode.end_gracefully(job)
        if command_id:
            await self.job_instances.cancel_command(str(command_id), job.instance_id)
        ids: dict[str, float | None] = {}  # id → launch time (None: just now)
        in_flight = self.launcher.in_flight(worker.launch_key(job))
        if in_flight is not None:
            # RunInstances in flight: wait for its answer so its instance is not missed.
            done, _ = await asyncio.wait({in_flight}, timeout=120)
            if in_flight not in done:
                raise BackendError("an instance launch is still in flight; retrying")
            if not in_flight.cancelled() and in_flight.exception() is None:
                ids[in_flight.result()["InstanceId"]] = None
        looked_at = time.time()
        with aws_errors(f"looking up the instances of job {job.id}"):
            found = await self.job_instances.of_job(job)
        # Also its recorded instance when EC2 does not show it yet (just launched).
        ids.update(self.job_instances.unfinished(job, found, looked_at))
        await self.job_instances.terminate_confirmed(ids, ids)
        if ids:
            self.log.info("awsjobs: job %s stopped; terminated %s", job.id, ", ".join(sorted(ids)))
        if job.storage == "s3":  # what the worker uploaded before it went
            await self.s3mode.finish(job, STOPPED, self.save_job)
        if self._monitor is not None:
            self._monitor.resolve(job.id, STOPPED)

    async def reattach(self, job: Job) -> Outcome | None:
        """After a restart: None if the job's instance is alive with its command (the service
        then calls wait), else how it ended. Raises BackendError if AWS can't be read."""
        with aws_errors(f"looking up job {job.id} after a restart"):
            if job.storage == "s3" and (job.handle.get("command_id") or job.handle.get(SELF_RUN)):
                await self.s3mode.sync(job)  # its log and exit code, as far as they got
            outcome = await self.reattacher.outcome(job)
        if outcome is not None and job.storage == "s3":
            await self.s3mode.finish(job, outcome, self.save_job)  # (again, if cut short)
        if outcome is None:  # alive with its command: its phase, from its state folder
            progress = await asyncio.to_thread(read_progress, self.job_state_dir(job))
            phase = phases.RUNNING if progress.started else phases.PREPARING
            await self.phases.report(job.id, phase)
        return outcome
