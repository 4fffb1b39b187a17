"""The SSM agent on each simulated instance: command invocations with AWS's statuses.

An invocation is `Pending` until its instance's agent is registered, then `InProgress` while
the command's `commands` text runs with bash in the instance's sandbox, then `Success` or
`Failed` by the exit code. The other endings use AWS's `StatusDetails` strings:

- ran past `executionTimeout` (its process group is killed): TimedOut, `Execution Timed Out`;
- not delivered within `TimeoutSeconds` (agent offline, instance stopped): TimedOut,
  `Delivery Timed Out`;
- its instance terminated before delivery: Failed, `Undeliverable`;
- CancelCommand: Cancelled, `Cancelled`;
- its instance terminated or stopped while it ran: the agent never reports, so it stays
  InProgress until its executionTimeout, then TimedOut, `Execution Timed Out`;
- its instance rebooted while it ran: Failed, `Failed`.

Where the AWS documentation does not say which `Status` goes with a detail (Undeliverable,
Terminated), the pairing in STATUS_OF_DETAILS is this simulator's choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from subprocess import Popen
from typing import Any

from .config import SimConfig
from .machines import GONE, Fleet, Machine
from .sandbox import kill_group

STATUS_OF_DETAILS: dict[str, str] = {
    "Pending": "Pending",
    "InProgress": "InProgress",
    "Delayed": "Delayed",
    "Success": "Success",
    "Failed": "Failed",
    "Cancelling": "Cancelling",
    "Cancelled": "Cancelled",
    "Execution Timed Out": "TimedOut",
    "Delivery Timed Out": "TimedOut",
    "Undeliverable": "Failed",
    "Terminated": "Cancelled",
    "Access Denied": "Failed",
}
FINAL = ("Success", "Failed", "Cancelled", "TimedOut")
RUN_SHELL_SCRIPT = "AWS-RunShellScript"
STDOUT_LIMIT, STDERR_LIMIT = 24000, 8000  # what GetCommandInvocation returns of each


@dataclass
class Invocation:
    command: Any  # moto's Command: its status rolls up from its invocations
    fields: dict[str, Any]  # moto's invocation dict, updated in place
    script: str | None  # the `commands` text; None: not AWS-RunShellScript
    delivery_deadline: float
    execution_seconds: float
    requested: datetime
    started_at: float | None = None
    started: datetime | None = None
    ended: datetime | None = None
    process: Popen[bytes] | None = None
    lost: bool = False  # its instance went away while it ran

    @property
    def instance_id(self) -> str:
        return str(self.fields["InstanceId"])

    @property
    def command_id(self) -> str:
        return str(self.fields["CommandId"])

    @property
    def final(self) -> bool:
        return self.fields["Status"] in FINAL


class Agent:
    def __init__(self, config: SimConfig, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        self.invocations: list[Invocation] = []
        fleet.down_listeners.append(self.machine_down)

    def track(self, command: Any) -> None:
        """A command moto just created: each invocation starts Pending."""
        scale = self.config.clock.ssm_timeout_scale
        now = time.monotonic()
        params = command.parameters or {}
        execution = int((params.get("executionTimeout") or ["3600"])[0])
        script = None
        if command.document_name == RUN_SHELL_SCRIPT:
            script = "\n".join(params.get("commands") or []) + "\n"
        for fields in command.invocations:
            fields.update(Status="Pending", StatusDetails="Pending", ResponseCode=-1)
            fields.update(ExecutionStartDateTime="", ExecutionEndDateTime="")
            fields.update(ExecutionElapsedTime="", StandardOutputContent="")
            fields["StandardErrorContent"] = ""
            self.invocations.append(
                Invocation(
                    command=command,
                    fields=fields,
                    script=script,
                    delivery_deadline=now + command.timeout_seconds * scale,
                    execution_seconds=execution * scale,
                    requested=datetime.now(timezone.utc),
                )
            )
        _roll_up(command, [i for i in self.invocations if i.command is command])

    def tick(self, now: float) -> None:
        for invocation in self.invocations:
            if invocation.final:
                continue
            machine = self.fleet.machines.get(invocation.instance_id)
            if invocation.started_at is None:
                self._deliver(invocation, machine, now)
            else:
                self._watch(invocation, now)

    def _deliver(self, invocation: Invocation, machine: Machine | None, now: float) -> None:
        if machine is None or machine.state in GONE:
            self.finish(invocation, "Undeliverable")
        elif machine.registered(now):
            self._start(invocation, machine, now)
        elif now >= invocation.delivery_deadline:
            self.finish(invocation, "Delivery Timed Out")

    def _start(self, invocation: Invocation, machine: Machine, now: float) -> None:
        invocation.started_at, invocation.started = now, datetime.now(timezone.utc)
        invocation.fields.update(
            Status="InProgress",
            StatusDetails="InProgress",
            ExecutionStartDateTime=_iso(invocation.started),
        )
        _roll_up(invocation.command, self.of_command(invocation.command_id))
        if invocation.script is None or machine.sandbox is None:
            self.finish(invocation, "Success", 0)  # nothing to run here: moto's answer
            return
        invocation.process = machine.sandbox.spawn(invocation.script, self._name(invocation))

    def _watch(self, invocation: Invocation, now: float) -> None:
        started = invocation.started_at or now
        process = invocation.process
        if not invocation.lost and process is not None and process.poll() is not None:
            code = process.returncode
            self.finish(invocation, "Success" if code == 0 else "Failed", code)
        elif now - started >= invocation.execution_seconds:
            self.finish(invocation, "Execution Timed Out")

    def machine_down(self, machine: Machine, why: str) -> None:
        """Its processes were killed: a reboot fails the invocation; after a stop or a
        termination the agent never reports, so it runs out its executionTimeout."""
        for invocation in self.invocations:
            if invocation.instance_id != machine.instance_id or invocation.final:
                continue
            if invocation.started_at is None:
                continue  # still Pending: delivery decides
            if why == "rebooted":
                self.finish(invocation, "Failed")
            else:
                invocation.lost = True

    def cancel(self, command_id: str, instance_ids: list[str]) -> None:
        for invocation in self.of_command(command_id):
            chosen = not instance_ids or invocation.instance_id in instance_ids
            if chosen and not invocation.final:
                self.finish(invocation, "Cancelled")

    def finish(self, invocation: Invocation, details: str, code: int = -1) -> None:
        """Set a final (or forced) status; kills the command's processes if still running."""
        if invocation.process is not None:
            kill_group(invocation.process)
        invocation.ended = datetime.now(timezone.utc)
        fields = invocation.fields
        fields.update(Status=STATUS_OF_DETAILS[details], StatusDetails=details, ResponseCode=code)
        if invocation.started is not None:
            elapsed = (invocation.ended - invocation.started).total_seconds()
            fields["ExecutionEndDateTime"] = _iso(invocation.ended)
            fields["ExecutionElapsedTime"] = f"PT{elapsed:.3f}S"
        self._read_output(invocation)
        _roll_up(invocation.command, self.of_command(invocation.command_id))

    def _read_output(self, invocation: Invocation) -> None:
        machine = self.fleet.machines.get(invocation.instance_id)
        if machine is None or machine.sandbox is None or invocation.process is None:
            return
        name = self._name(invocation)
        for stream, key, limit in (
            ("out", "StandardOutputContent", STDOUT_LIMIT),
            ("err", "StandardErrorContent", STDERR_LIMIT),
        ):
            path = machine.sandbox.output(name, stream)
            text = path.read_text("utf-8", "replace") if path.exists() else ""
            invocation.fields[key] = text[:limit]

    def of_command(self, command_id: str) -> list[Invocation]:
        return [i for i in self.invocations if i.command_id == command_id]

    def find(self, command_id: str, instance_id: str) -> Invocation | None:
        return next((i for i in self.of_command(command_id) if i.instance_id == instance_id), None)

    def kill_all(self) -> None:
        for invocation in self.invocations:
            if invocation.process is not None:
                kill_group(invocation.process)

    @staticmethod
    def _name(invocation: Invocation) -> str:
        return f"command-{invocation.command_id}"


def _roll_up(command: Any, invocations: list[Invocation]) -> None:
    """The command's own Status (ListCommands) from its invocations'."""
    statuses = [i.fields["Status"] for i in invocations]
    if not statuses:
        return
    if any(s not in FINAL for s in statuses):
        status = "Pending" if all(s == "Pending" for s in statuses) else "InProgress"
        command.status, command.status_details = status, status
    elif len(invocations) == 1:
        command.status = statuses[0]
        command.status_details = invocations[0].fields["StatusDetails"]
    else:
        ok = all(s == "Success" for s in statuses)
        command.status = "Success" if ok else "Failed"
        command.status_details = "Success" if ok else "Incomplete"
    command.completed_count = sum(1 for s in statuses if s in FINAL)
    command.error_count = sum(1 for s in statuses if s in ("Failed", "TimedOut"))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
