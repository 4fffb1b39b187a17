"""One monitor loop for every EC2 job of this server.

Each cycle makes a bounded number of AWS calls, whatever the number of jobs (≤ 4 up to 1000
jobs, the page size of DescribeInstances):
- `DescribeInstances` of all our instances by tag (`awsjobs:managed=true` and our owner),
  paginated at 1000 per page; plus at most one call by `instance-id` for watched instances the
  tag query did not return (e.g. a changed owner setting);
- at most `command_checks_per_cycle` (default 1) `GetCommandInvocation` calls: first for
  jobs with evidence that their command has ended without an exit code (see `_judge`), else,
  with the budget left, for the one running command asked about longest ago (each at most
  once per `command_check_interval`);
- at most one `TerminateInstances` for all jobs that ended in this cycle.
Exit codes come from the `exit_code` files the workers write on the shared file system.
On throttling (after botocore's own retries) the loop backs off exponentially, with jitter.

Between cycles, every `file_check_interval` (1 s), the jobs' state folders are looked at (no
AWS call): a job whose script started enters its `running` phase; a job whose exit code
appeared is ruled at once and its instance terminated (one TerminateInstances for all that
ended in that look), so a finished job reads final within seconds, not at the next cycle.
What is looked at is `read_progress` (the files on EFS; a storage mode whose exit codes live
elsewhere gives its own reader, batched for all jobs). No look while AWS throttles or fails.

Ruling on each job (`classify`):
- an exit code file: 0 → succeeded, else failed ("exited with code N"), whatever the instance;
- instance gone with state reason `Server.SpotInstanceTermination` → interrupted;
- `Client.InstanceInitiatedShutdown` (the worker halted itself) without an exit code, at or
  after the lifetime deadline → timed_out; before it → failed;
- terminated from outside without an exit code → failed, with AWS's reason;
- missing (EC2 does not know the id): unknown while the instance may be new (launched within
  the consistency window: EC2 is eventually consistent), then failed with an outcome that says
  it is unknown;
- still running long after the deadline (its own `shutdown` failed) → timed_out, terminated.
When a job ends, its instance is terminated and the termination confirmed before the outcome
is handed back (the worker also halts itself: belt and braces); NotFound for an instance that
may be new confirms nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import phases
from ..jobfiles import Progress, outcome_from_exit_code, read_progress
from ..models import JobState, Outcome
from . import ssm
from .clients import AWSClients, backoff_delay
from .errors import AWS_ERRORS, error_message, is_throttling
from .instances import (
    ALIVE,
    CONSISTENCY_WINDOW_SECONDS,
    GONE,
    HALTED,
    MAX_FILTER_VALUES,
    MISSING,
    describe_ids,
    describe_instances,
    launch_time,
    managed_filters,
    may_be_new,
    state_of,
    terminate,
)
from .ssm import MAX_EXECUTION_TIMEOUT

log = logging.getLogger(__name__)

SPOT_INTERRUPTION = "Server.SpotInstanceTermination"
SELF_SHUTDOWN = "Client.InstanceInitiatedShutdown"
# A self-shutdown this close to the deadline counts as the deadline (boot takes a while).
DEADLINE_SLACK_SECONDS = 120.0


def classify(
    instance: Mapping[str, Any] | None,
    exit_code: int | None,
    *,
    now: float,
    deadline: float,
    overdue_grace: float = 600.0,
    instance_id: str = "",
) -> Outcome | None:
    """How a job ended, from its instance's description (None: EC2 does not know it) and its
    exit code file, or None while it is still going. Pure; the caller decides about grace
    periods and termination."""
    if exit_code is not None:
        return outcome_from_exit_code(exit_code)
    state = state_of(instance)
    if instance is None or state is None:
        return Outcome(JobState.FAILED, error=unknown_ending(instance_id))
    iid = instance.get("InstanceId", "")
    if state in ALIVE:
        if now > deadline + overdue_grace:
            return Outcome(
                JobState.TIMED_OUT,
                error=f"reached its max lifetime; instance {iid} was still running and is "
                "terminated",
            )
        return None
    if state in HALTED:
        return Outcome(
            JobState.FAILED,
            error=f"instance {iid} was stopped outside awsjobs before the job finished",
        )
    reason = instance.get("StateReason", {}) or {}
    code = str(reason.get("Code", ""))
    message = str(reason.get("Message", "")) or str(instance.get("StateTransitionReason", ""))
    if code == SPOT_INTERRUPTION:
        return Outcome(
            JobState.INTERRUPTED, error=f"AWS reclaimed spot instance {iid} ({SPOT_INTERRUPTION})"
        )
    if code == SELF_SHUTDOWN:
        if now >= deadline - DEADLINE_SLACK_SECONDS:
            return Outcome(
                JobState.TIMED_OUT,
                error=f"reached its max lifetime: instance {iid} shut itself down",
            )
        return Outcome(
            JobState.FAILED,
            error=f"instance {iid} shut itself down before the job wrote an exit code",
        )
    return Outcome(
        JobState.FAILED,
        error=f"instance {iid} was {state} before the job finished: "
        f"{message or code or 'no reason given by AWS'}",
    )


def unknown_ending(instance_id: str) -> str:
    """Why a job whose instance EC2 no longer knows, and that wrote no exit code, has no
    known outcome."""
    which = f"its instance {instance_id}" if instance_id else "its instance"
    return (
        f"{which} no longer exists on EC2 and the job wrote no exit code: how it ended is "
        "unknown (EC2 lists a terminated instance for about an hour only; it may have ended "
        "while the server was down, or been terminated outside awsjobs)"
    )


# Endings of a command that never ran the job, or that SSM ended: StatusDetails → why.
COMMAND_ENDINGS = {
    ssm.DELIVERY_TIMED_OUT: "the job's command was never delivered: the instance's SSM agent "
    f"did not pick it up in time ({ssm.DELIVERY_TIMED_OUT})",
    ssm.UNDELIVERABLE: "the job's command could not be delivered: the instance was gone or "
    f"its SSM agent unreachable ({ssm.UNDELIVERABLE})",
    ssm.TERMINATED: f"SSM terminated the job's command before it finished ({ssm.TERMINATED})",
}


def outcome_for_command(invocation: Mapping[str, Any]) -> Outcome:
    """A job whose command ended without writing an exit code, from AWS's Status and
    StatusDetails (compared with AWS's exact strings)."""
    status = str(invocation.get("Status", ""))
    detail = str(invocation.get("StatusDetails", "") or status)
    rc = invocation.get("ResponseCode")
    stderr = str(invocation.get("StandardErrorContent", "") or "").strip()
    tail = f": {stderr[-500:]}" if stderr else ""
    if detail in COMMAND_ENDINGS:
        return Outcome(JobState.FAILED, error=COMMAND_ENDINGS[detail] + tail)
    if detail == ssm.EXECUTION_TIMED_OUT or status == "TimedOut":
        return Outcome(JobState.TIMED_OUT, error="the job's command reached its execution timeout")
    if status in ("Cancelled", "Cancelling"):
        return Outcome(JobState.FAILED, error="the job's command was cancelled outside awsjobs")
    code = f", code {rc}" if isinstance(rc, int) and rc >= 0 else ""
    return Outcome(
        JobState.FAILED,
        error=f"the job's command ended ({detail}{code}) without an exit code{tail}",
    )


# One look at every watched job's progress (started, exit code), by job id: one call for all
# jobs, so a reader may batch (one listing, one request). Jobs it says nothing about: no news.
ProgressReader = Callable[[list["Watch"]], Awaitable[dict[str, Progress]]]
# Report a job's phase (`phases.py`): the job id, the phase.
PhaseReport = Callable[[str, str], Awaitable[None]]


async def read_state_folders(watches: list[Watch]) -> dict[str, Progress]:
    """The default reader: each job's state folder on the shared file system, in a thread."""
    folders = {w.job_id: w.exit_code_path.parent for w in watches}
    return await asyncio.to_thread(lambda: {k: read_progress(d) for k, d in folders.items()})


async def _no_phase(job_id: str, phase: str) -> None:
    """The default phase report: none."""


@dataclass
class Watch:
    job_id: str
    instance_id: str
    command_id: str | None
    exit_code_path: Path
    lifetime_seconds: float
    started_at: float
    future: asyncio.Future[Outcome]
    registered_at: float = field(default_factory=time.time)
    launch_time: float | None = None
    seen: bool = False
    stopping: bool = False
    started: bool = False  # its script has started (its `running` phase was reported)
    gone_at: float | None = None  # first seen gone (or command done) without an exit code
    last_command_check: float = 0.0  # when SSM was last asked about its command (0: never)
    invocation: dict[str, Any] | None = None  # the last finished command invocation seen
    verdict: Outcome | None = None  # decided; resolved once the instance is confirmed gone

    @property
    def deadline(self) -> float:
        return (self.launch_time or self.started_at) + self.lifetime_seconds

    @property
    def command_deadline(self) -> float:
        """When SSM ends the command at the latest: its executionTimeout is the time left to
        the deadline, capped at 48 h (`command.execution_timeout`). From the launch time,
        which is a little before SendCommand: at worst SSM is asked a little early."""
        return min(self.deadline, (self.launch_time or self.started_at) + MAX_EXECUTION_TIMEOUT)


@dataclass
class MonitorStats:
    cycles: int = 0
    failed_cycles: int = 0
    throttled_cycles: int = 0
    delays: list[float] = field(default_factory=list)


class Monitor:
    """Watches every running EC2 job; `watch()` returns a future of the job's Outcome."""

    def __init__(
        self,
        clients: AWSClients,
        *,
        owner: str,
        interval: float = 15.0,
        max_backoff: float = 300.0,
        command_check_interval: float = 120.0,
        command_checks_per_cycle: int = 1,
        exit_grace: float = 90.0,
        consistency_window: float = CONSISTENCY_WINDOW_SECONDS,
        overdue_grace: float = 600.0,
        file_check_interval: float = 1.0,
        read_progress: ProgressReader = read_state_folders,
        report_phase: PhaseReport = _no_phase,
    ) -> None:
        self.clients = clients
        self.owner = owner
        self.interval = interval
        self.max_backoff = max_backoff
        self.command_check_interval = command_check_interval
        self.command_checks_per_cycle = command_checks_per_cycle
        self.exit_grace = exit_grace
        self.consistency_window = consistency_window
        self.overdue_grace = overdue_grace
        self.file_check_interval = file_check_interval
        self.read_progress = read_progress
        self.report_phase = report_phase
        self.watches: dict[str, Watch] = {}
        self.stats = MonitorStats()
        self._cycle_lock = asyncio.Lock()
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._budget = 0
        self._idle: list[Watch] = []  # this cycle's running jobs, candidates for a spare check
        self.sleep = asyncio.sleep  # the loop's pause (tests record it)

    # -- registration ------------------------------------------------------------------------

    def watch(
        self,
        *,
        job_id: str,
        instance_id: str,
        command_id: str | None,
        exit_code_path: Path,
        lifetime_seconds: float,
        started_at: float,
    ) -> asyncio.Future[Outcome]:
        current = self.watches.get(job_id)
        if current is not None and not current.future.done():
            return current.future
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.watches[job_id] = Watch(
            job_id=job_id,
            instance_id=instance_id,
            command_id=command_id,
            exit_code_path=exit_code_path,
            lifetime_seconds=lifetime_seconds,
            started_at=started_at,
            future=future,
        )
        self._work.set()
        return future

    def unwatch(self, job_id: str) -> None:
        self.watches.pop(job_id, None)

    def mark_stopping(self, job_id: str) -> None:
        """A Stop is under way: never rule on this job from its instance's termination."""
        w = self.watches.get(job_id)
        if w is not None:
            w.stopping = True

    def resolve(self, job_id: str, outcome: Outcome) -> None:
        w = self.watches.pop(job_id, None)
        if w is not None and not w.future.done():
            w.future.set_result(outcome)

    # -- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="awsjobs-ec2-monitor"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in list(self.watches.values()):
            if not w.future.done():
                w.future.cancel()
        self.watches.clear()

    async def _loop(self) -> None:
        failures = 0
        while True:
            if not self.watches:
                self._work.clear()
                await self._work.wait()
                continue
            try:
                ok = await self.run_cycle()
            except Exception:
                log.exception("awsjobs: the EC2 monitor cycle failed")
                ok = False
            if ok:
                failures = 0
                delay = self.interval
            else:
                failures += 1
                delay = backoff_delay(failures, self.interval, self.max_backoff)
            self.stats.delays.append(delay)
            del self.stats.delays[:-100]
            if ok:
                await self._look_until(asyncio.get_running_loop().time() + delay)
            else:
                await self.sleep(delay)  # AWS throttles or fails: not even a TerminateInstances

    async def _look_until(self, end: float) -> None:
        """Until `end` (loop time), look at the jobs' files every `file_check_interval`."""
        loop = asyncio.get_running_loop()
        while (left := end - loop.time()) > 0:
            await self.sleep(min(left, self.file_check_interval))
            if self.watches and loop.time() < end:
                try:
                    await self.look_at_files()
                except Exception:
                    log.exception("awsjobs: the EC2 monitor's look at the job files failed")

    async def look_at_files(self) -> None:
        """Between cycles: the jobs' progress (no AWS call). A job whose exit code appeared
        is ruled now, its instance terminated (one call for all), the outcome handed back once
        EC2 confirms; one EC2 does not show yet waits for the next cycle."""
        async with self._cycle_lock:
            watches = [
                w
                for w in self.watches.values()
                if not w.future.done() and not w.stopping and w.verdict is None
            ]
            if not watches:
                return
            progress = await self.read_progress(watches)
            ending: list[Watch] = []
            for w in watches:
                found = progress.get(w.job_id, Progress())
                await self._note_start(w, found)
                if found.exit_code is not None:
                    await self._decide(w, outcome_from_exit_code(found.exit_code))
                    ending.append(w)
            if ending:
                await self._terminate_and_resolve(await self.clients.ec2(), ending)

    async def _note_start(self, w: Watch, found: Progress) -> None:
        if found.started and not w.started:
            w.started = True
            await self.report_phase(w.job_id, phases.RUNNING)

    async def _decide(self, w: Watch, verdict: Outcome | None) -> None:
        """The job's outcome is known (None: not yet): it enters its `finishing` phase."""
        if verdict is not None and w.verdict is None:
            w.verdict = verdict
            await self.report_phase(w.job_id, phases.FINISHING)

    async def run_cycle(self) -> bool:
        """One pass over every watched job. False if AWS could not be read (throttled or
        failing): the loop then backs off."""
        async with self._cycle_lock:
            if not self.watches:
                return True
            self.stats.cycles += 1
            ec2 = await self.clients.ec2()
            watches = [w for w in self.watches.values() if not w.future.done()]
            looked_at = time.time()  # what the listing missed is judged at its send
            try:
                instances = await describe_instances(ec2, managed_filters(self.owner))
                unexplained = [w.instance_id for w in watches if w.instance_id not in instances]
                if unexplained:
                    instances.update(await describe_ids(ec2, unexplained[:MAX_FILTER_VALUES]))
            except AWS_ERRORS as exc:
                self.stats.failed_cycles += 1
                if is_throttling(exc):
                    self.stats.throttled_cycles += 1
                    log.info("awsjobs: EC2 throttled the monitor; backing off")
                else:
                    log.warning("awsjobs: the monitor cannot describe instances: %s", exc)
                return False
            progress = await self.read_progress(watches)
            now = time.time()
            self._budget = self.command_checks_per_cycle
            # Command checks go to the jobs checked longest ago first (round-robin).
            watches.sort(key=lambda w: w.last_command_check)
            ending: list[Watch] = []
            self._idle = []
            for w in watches:
                if w.stopping:
                    continue
                instance = instances.get(w.instance_id)
                found = progress.get(w.job_id, Progress())
                await self._note_start(w, found)
                if w.verdict is None:
                    verdict = await self._judge(w, instance, found.exit_code, now, looked_at)
                    await self._decide(w, verdict)
                if w.verdict is None:
                    continue
                if instance is not None and state_of(instance) not in GONE:
                    ending.append(w)
                elif instance is None and not w.seen and self._may_be_new(w, looked_at):
                    ending.append(w)  # ended before EC2 shows its instance: terminate it
                else:
                    self.resolve(w.job_id, w.verdict)
            spare = self._spare_check(now)
            if spare is not None:
                await self._decide(spare, await self._check_command(spare, now))
                if spare.verdict is not None:
                    ending.append(spare)  # its instance is alive: terminate it too
            if ending:
                await self._terminate_and_resolve(ec2, ending)
            return True

    def _may_be_new(self, w: Watch, looked_at: float) -> bool:
        """Whether EC2 may not have known the job's instance (launched within the window) when
        a look that missed it was sent: judged at the send, as a slow answer to an early look
        proves nothing about the window."""
        return may_be_new(w.launch_time or w.started_at, self.consistency_window, looked_at)

    def _spare_check(self, now: float) -> Watch | None:
        """The running job to ask SSM about with this cycle's leftover budget, if any: the
        one asked longest ago (never asked: counted from its registration), when due."""
        if self._budget <= 0:
            return None
        due = [
            w
            for w in self._idle
            if w.command_id
            and now - max(w.last_command_check, w.registered_at) >= self.command_check_interval
        ]
        return min(due, key=lambda w: max(w.last_command_check, w.registered_at), default=None)

    async def _judge(
        self,
        w: Watch,
        instance: dict[str, Any] | None,
        exit_code: int | None,
        now: float,
        looked_at: float,
    ) -> Outcome | None:
        if instance is not None:
            w.seen = True
            w.launch_time = launch_time(instance) or w.launch_time
        if exit_code is not None:
            return outcome_from_exit_code(exit_code)
        state = state_of(instance)
        if instance is None and not w.seen and self._may_be_new(w, looked_at):
            return None  # EC2 is eventually consistent right after RunInstances: unknown
        # When to ask SSM (GetCommandInvocation) about a job's command. Not on a timer per
        # running job: that is one call per job, and the exit_code file already tells how
        # every command that reached the end of its script ended. A command that ends
        # without writing it has failed before or outside the script, and then:
        # - the script's own failures (EFS not mounted, ...) halt the instance: it is seen
        #   gone below, and SSM is asked once, for the reason (stderr, response code);
        # - SSM's execution timeout kills the script: asked once the command's timeout has
        #   passed (`command_deadline`), then every `command_check_interval` while it says
        #   the command still runs;
        # - anything else (cancelled outside awsjobs, agent gone) leaves a live instance that
        #   bills until it halts itself at the lifetime deadline. The budget left at the end
        #   of a cycle asks about one such running command, the one asked longest ago
        #   (`_spare_check`): each job is looked at every max(interval, N cycles) at N jobs.
        # Polling ListCommands instead was rejected: it pages 50 commands at most and its
        # pages fill with every finished command of the account, so one call per cycle does
        # not cover N jobs either. The checks share a budget of `command_checks_per_cycle`
        # calls per cycle, oldest-checked first; a job over budget waits for a later cycle.
        if state in ALIVE:
            outcome = classify(
                instance, None, now=now, deadline=w.deadline, overdue_grace=self.overdue_grace
            )
            if outcome is not None:
                return outcome
            if now < w.command_deadline and w.invocation is None:
                self._idle.append(w)  # running, within its timeout: only a spare check
                return None
            return await self._check_command(w, now)
        # Gone, missing or halted without an exit code. Give the file a grace period: the
        # server's NFS client may cache the directory listing for a while.
        if w.gone_at is None:
            w.gone_at = now
        if now - w.gone_at < self.exit_grace:
            return None
        outcome = classify(
            instance,
            None,
            now=now,
            deadline=w.deadline,
            overdue_grace=self.overdue_grace,
            instance_id=w.instance_id,
        )
        if (
            outcome is not None
            and outcome.state is JobState.FAILED
            and w.command_id
            and w.invocation is None
        ):
            # Why did it end? One GetCommandInvocation, within the per-cycle budget. When
            # many jobs end at once, the rest wait their turn for a while (one cycle each),
            # then are ruled without the detail rather than kept waiting.
            if (
                self._budget <= 0
                and now - w.gone_at < self.exit_grace + self.command_check_interval
            ):
                return None
            invocation = await self._get_invocation(w)
            if ssm.is_done(invocation):
                detail = outcome_for_command(invocation).error or ""
                outcome = Outcome(JobState.FAILED, error=f"{outcome.error}; {detail}")
        return outcome

    async def _check_command(self, w: Watch, now: float) -> Outcome | None:
        if w.invocation is None:
            if not w.command_id or now - w.last_command_check < self.command_check_interval:
                return None
            invocation = await self._get_invocation(w)
            if not ssm.is_done(invocation):
                return None
            w.invocation = invocation
            w.gone_at = now
        # The command ended but no exit code yet: wait out the grace period, then rule.
        if w.gone_at is not None and now - w.gone_at < self.exit_grace:
            return None
        return outcome_for_command(w.invocation)

    async def _get_invocation(self, w: Watch) -> dict[str, Any] | None:
        if self._budget <= 0 or not w.command_id:
            return None
        self._budget -= 1
        w.last_command_check = time.time()
        try:
            return await ssm.get_invocation(await self.clients.ssm(), w.command_id, w.instance_id)
        except AWS_ERRORS as exc:
            log.info("awsjobs: command status of job %s: %s", w.job_id, error_message(exc))
            return None

    async def _terminate_and_resolve(self, ec2: Any, ending: list[Watch]) -> None:
        sent_at = time.time()
        try:
            states = await terminate(ec2, [w.instance_id for w in ending])
        except AWS_ERRORS as exc:
            log.warning("awsjobs: cannot terminate finished jobs' instances yet: %s", exc)
            return  # the verdicts stay; the next cycle tries again
        for w in ending:
            state = states.get(w.instance_id)
            if state in GONE or (state == MISSING and not self._may_be_new(w, sent_at)):
                assert w.verdict is not None
                self.resolve(w.job_id, w.verdict)
            else:
                log.warning(
                    "awsjobs: instance %s of job %s is %s after TerminateInstances; retrying",
                    w.instance_id,
                    w.job_id,
                    states.get(w.instance_id, "unknown"),
                )
