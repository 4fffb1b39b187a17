"""EC2 + SSM backend: each job runs on its own freshly launched instance.

Launch: choose the cheapest instance type that fits (`choice`), `RunInstances` with the
worker's boot script (`aws.userdata`: EFS mount, lifetime deadline) and
`InstanceInitiatedShutdownBehavior=terminate` (`aws.launch`), record the instance id at once,
then `SendCommand` the job's script (`aws.command`, `aws.ssm`). Status: one monitor loop for
every job (`aws.monitor`). Stop: `CancelCommand` (best effort) + `TerminateInstances`,
confirmed (`aws.instances`); an S3 job gets SIGTERM and a grace first (`s3_stop`). Settings and
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
from ...aws import instances, ssm, tags
from ...aws.catalog import Catalog, OnDemandPrices
from ...aws.clients import AWSClients, backoff_delay
from ...aws.errors import AWS_ERRORS, aws_errors, error_code, error_message
from ...aws.launch import Launcher, UncertainLaunch
from ...aws.monitor import Monitor, classify
from ...errors import BackendError
from ...gpus import NO_GPU, GpuNeed
from ...jobfiles import read_progress
from ...models import Job, JobState, Outcome
from ...runners import build_command
from ..base import RecordHandle
from . import worker
from .choice import InstanceChoice
from .inventory import Inventory
from .job_instances import JobInstances, cleanup_note
from .s3_resume import resume_launch
from .s3mode import S3Mode
from .scheduled_worker import SELF_RUN
from .schedules import EC2Schedules
from .settings import EC2Settings

STOPPED = Outcome(JobState.STOPPED, error="stopped on request")
# While SendCommand waits for the agent, longer than an agent usually takes to register (boot
# and registration: about a minute), every 5th failure EC2 is asked whether the instance is
# gone (terminated from outside, a failed boot): the wait then ends early.
GONE_CHECK_AFTER_SECONDS = 60.0
GONE_CHECK_EVERY = 5


def access_denied_message(exc: Exception, region: str, grace_seconds: float) -> str:
    """What a SendCommand still denied after the registration window means, and which IAM
    statements to check (README, "IAM permissions of the Jupyter server")."""
    return (
        f"SendCommand failed: {error_message(exc)}, still past the window given to the "
        "instance's SSM agent to register (c.EC2Backend.ssm_access_denied_grace_seconds = "
        f"{grace_seconds:g}). Check that the server's IAM policy allows ssm:SendCommand on the "
        f"instance ARN arn:aws:ec2:{region}:ACCOUNT:instance/* with the condition "
        "ssm:resourceTag/awsjobs:managed = true (statement CommandsOnlyOnOurWorkers), and on the "
        f"document arn:aws:ssm:{region}::document/{ssm.DOCUMENT} (statement TheShellScriptDocument)"
    )


class EC2Backend(EC2Settings):
    """Runs each job on its own freshly launched EC2 instance, driven through SSM."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: AWSClients | None = None
        self._choice: InstanceChoice | None = None
        self._inventory: Inventory | None = None
        self._job_instances: JobInstances | None = None
        self._launcher: Launcher | None = None
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
        command_id = await self.send_job_command(job, iid, commands, launched_at)
        if command_id is not None:
            await record({"command_id": command_id})
            await self.phases.report(job.id, phases.PREPARING)

    async def send_job_command(
        self, job: Job, iid: str, commands: list[str], launched_at: float
    ) -> str | None:
        """SendCommand the job's script, retried while the instance's SSM agent registers.
        None if the instance went away meanwhile (the monitor then rules) or a Stop came."""
        deadline = job.deadline(launched_at, unit_seconds=self.lifetime_unit_seconds)
        ec2 = await self.clients.ec2()
        comment = worker.command_comment(job)

        async def give_up(failures: int) -> bool:
            if job.id in self._stopping:
                return True
            return self._checks_gone(failures) and await instances.is_gone(ec2, iid)

        try:
            return await ssm.send_until_registered(
                await self.clients.ssm(),
                iid,
                lambda: ssm.shell_script_parameters(
                    instance_id=iid,
                    commands=commands,
                    execution_seconds=deadline - time.time(),
                    comment=comment,
                ),
                timeout_seconds=self.launch_timeout_seconds,
                pause=self._send_pause,
                throttled_pause=lambda n: backoff_delay(
                    n, self.ssm_retry_seconds, self.ssm_retry_max_seconds
                ),
                give_up=give_up,
                access_denied_grace_seconds=self.ssm_access_denied_grace_seconds,
            )
        except ssm.AgentNotRegistered as exc:
            problem = await self.job_instances.terminate_until_confirmed([iid], job.id)
            raise BackendError(
                f"instance {iid} did not accept the job's command through SSM within "
                f"{self.launch_timeout_seconds:g} s (is the SSM agent on the AMI, and does the "
                "instance profile allow AmazonSSMManagedInstanceCore? can the subnet reach "
                f"SSM?); {cleanup_note(iid, problem)}"
            ) from exc
        except AWS_ERRORS as exc:
            problem = await self.job_instances.terminate_until_confirmed([iid], job.id)
            failed = f"SendCommand failed: {error_message(exc)}"
            if error_code(exc) == ssm.ACCESS_DENIED_CODE:
                failed = access_denied_message(
                    exc, self.region, self.ssm_access_denied_grace_seconds
                )
            raise BackendError(f"{failed}; {cleanup_note(iid, problem)}") from exc

    def _send_pause(self, failures: int) -> float:
        """Seconds between SendCommand attempts while the agent registers: a steady cadence
        (the command is accepted within one pause of the registration), twice as long before
        an attempt that first asks EC2 whether the instance is gone (`_checks_gone`), so the
        launch makes at most one AWS call per `ssm_retry_seconds` on average."""
        return self.ssm_retry_seconds * (2 if self._checks_gone(failures) else 1)

    def _checks_gone(self, failures: int) -> bool:
        """Whether the attempt after `failures` refusals first asks EC2 if the instance is gone:
        never within the first minute (the usual boot and registration: no pause doubled
        there), then every 5th."""
        waited = failures * self.ssm_retry_seconds
        return waited >= GONE_CHECK_AFTER_SECONDS and failures % GONE_CHECK_EVERY == 0

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
        with aws_errors(f"looking up the instances of job {job.id}"):
            found = await self.job_instances.of_job(job)
        # Also its recorded instance when EC2 does not show it yet (just launched).
        ids.update(self.job_instances.unfinished(job, found))
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
            outcome = await self._reattach(job)
        if outcome is not None and job.storage == "s3":
            await self.s3mode.finish(job, outcome, self.save_job)  # (again, if cut short)
        if outcome is None:  # alive with its command: its phase, from its state folder
            progress = await asyncio.to_thread(read_progress, self.job_state_dir(job))
            phase = phases.RUNNING if progress.started else phases.PREPARING
            await self.phases.report(job.id, phase)
        return outcome

    async def _reattach(self, job: Job) -> Outcome | None:
        exit_code = await asyncio.to_thread(self.read_exit_code, job)
        found = await self.job_instances.of_job(job)
        iid = job.instance_id
        if iid and iid not in found and self.job_instances.may_be_new(job.started_at):
            # Launched just before the restart: EC2 may not show it yet. Unknown, not gone;
            # the service retries reattach on BackendError.
            raise BackendError(f"instance {iid} of job {job.id} is not visible on EC2 yet")
        if iid is None and found:
            # The server stopped before the id was recorded: the newest tagged instance of
            # the job's current attempt (after a relaunch, an earlier attempt's is not it).
            current = str(job.attempt_number)
            ours = [i for i in found if tags.tags_of(found[i]).get(tags.ATTEMPT, "1") == current]
            iid = max(ours, key=lambda i: instances.launch_time(found[i]) or 0.0, default=None)
        instance = found.get(iid) if iid else None
        live = [i for i, inst in found.items() if instances.state_of(inst) in instances.UNFINISHED]
        extra = [i for i in live if i != iid]
        if extra:
            self.log.warning("awsjobs: job %s has extra instances %s; terminating", job.id, extra)
            await self.job_instances.terminate_confirmed(
                extra, {i: instances.launch_time(found[i]) for i in extra}
            )
        if exit_code is not None:
            if iid in live:
                await self.job_instances.terminate_confirmed([iid])
            return classify(instance, exit_code, now=time.time(), deadline=0.0)
        if iid is None:
            # The server stopped before the id was recorded. If RunInstances was sent (its
            # attempt is recorded first), EC2 may not list its instance yet (eventual
            # consistency): look again, by tag, until the window is over. The service retries
            # reattach on BackendError.
            attempt = job.handle.get("launch_attempt") or {}
            since = time.time() - float(attempt.get("at") or max(job.created_at, job.updated_at))
            window = self.reattach_grace_seconds
            if attempt:
                window = max(window, self.consistency_window_seconds)
            if since < window:
                raise BackendError(f"no instance of job {job.id} is visible yet")
            return Outcome(
                JobState.FAILED, error="the server stopped before an instance was launched"
            )
        return await self._reattach_instance(job, iid, instance)

    async def _reattach_instance(
        self, job: Job, iid: str, instance: dict[str, Any] | None
    ) -> Outcome | None:
        """Reattach a job without an exit code to its instance: alive, or how it ended."""
        # A scheduled run's worker runs its job itself: no command is expected.
        self_run = bool(job.handle.get(SELF_RUN))
        if instances.state_of(instance) in instances.ALIVE:
            if (
                not self_run
                and not job.handle.get("command_id")
                and not await self.job_instances.has_command(iid)
            ):
                if job.storage == "s3" and job.state is JobState.LAUNCHING:
                    return await resume_launch(self, job, iid)  # its upload, then its command
                await self.job_instances.terminate_confirmed([iid])
                return Outcome(
                    JobState.FAILED,
                    error="the server stopped while the job was launching; its instance "
                    f"{iid} was terminated",
                )
            return None
        start = instances.launch_time(instance) if instance else None
        deadline = job.deadline(start, unit_seconds=self.lifetime_unit_seconds)
        outcome = classify(instance, None, now=time.time(), deadline=deadline, instance_id=iid)
        if outcome is not None and instances.state_of(instance) in instances.HALTED:
            await self.job_instances.terminate_confirmed([iid])
        if (
            outcome is not None
            and outcome.state is JobState.FAILED
            and not self_run
            and not job.handle.get("command_id")
            and not await self.job_instances.has_command(iid)
        ):
            # Its command never went out, so the job never ran: say so, rather than blame
            # whoever ended the instance (most often this server itself, which gave up the
            # launch after an earlier restart and was stopped again before recording it).
            return Outcome(
                JobState.FAILED,
                error="the server stopped while the job was launching; the job never ran, "
                f"and its instance {iid} is {instances.state_of(instance) or 'gone'}",
            )
        if outcome is not None and outcome.state is JobState.FAILED:
            detail = await self.job_instances.command_detail(job, iid)
            if detail:
                outcome = Outcome(JobState.FAILED, error=f"{outcome.error}; {detail}")
        return outcome
