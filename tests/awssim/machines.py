"""The instances' lives, on top of moto's Instance models (which never move on their own).

pending → running after the boot delay (then the boot script runs in the instance's sandbox
and the SSM agent registers a little later); a halt asked on the instance (`shutdown -h`)
goes shutting-down → terminated, or stopping → stopped, as `InstanceInitiatedShutdownBehavior`
says, with StateReason `Client.InstanceInitiatedShutdown`; a spot interruption gives a notice,
then `Server.SpotInstanceTermination`; a reboot kills the processes and empties tmpfs, then
runs only the per-boot scripts (user data runs once per instance, as with cloud-init).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moto.ec2.exceptions import InvalidInstanceIdError
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import Instance, InstanceState, StateReason

from .config import SimConfig
from .imds import url_of
from .record import InstanceLife, Record, utc_iso
from .sandbox import PER_BOOT_DIR, Sandbox

STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
USER_SHUTDOWN = "Client.UserInitiatedShutdown"
INSTANCE_SHUTDOWN = "Client.InstanceInitiatedShutdown"
SPOT_TERMINATION = "Server.SpotInstanceTermination"
REASON_MESSAGES = {
    USER_SHUTDOWN: "User initiated shutdown",
    INSTANCE_SHUTDOWN: "Instance initiated shutdown",
    SPOT_TERMINATION: "Spot instance termination",
}
GONE = ("shutting-down", "terminated")


@dataclass
class Machine:
    instance_id: str
    account: str
    region: str
    life: InstanceLife
    market: str
    user_data: str
    sandbox: Sandbox | None
    state: str = "pending"
    next_state: str | None = "running"
    due: float = 0.0
    agent_online_at: float | None = None
    agent_seen: bool = False  # the agent has registered at least once
    booted_once: bool = False
    halt_at: float | None = None  # a `shutdown` scheduled on the instance
    halt_reboots: bool = False
    spot_terminate_at: float | None = None
    torn_down: bool = False  # moto's Instance.terminate() has run
    shim_calls: list[str] = field(default_factory=list)

    def registered(self, now: float) -> bool:
        """The SSM agent is online: SendCommand reaches it."""
        online = self.agent_online_at
        return self.state == "running" and online is not None and now >= online

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "state": self.state,
            "market": self.market,
            "ssm_registered": self.registered(now),
            "shutdown_scheduled_in": None if self.halt_at is None else self.halt_at - now,
            "shim_calls": list(self.shim_calls),
            "sandbox": str(self.sandbox.root) if self.sandbox else None,
        }


# Called when an instance goes down: (machine, "terminated" | "stopped" | "rebooted").
DownListener = Callable[[Machine, str], None]


class Fleet:
    def __init__(self, config: SimConfig, record: Record, sandbox_root: Path) -> None:
        self.config = config
        self.record = record
        self.sandbox_root = sandbox_root
        self.machines: dict[str, Machine] = {}
        self.down_listeners: list[DownListener] = []
        self.endpoint_url = ""  # the simulator's URL: the `aws` shim's endpoint

    # -- launch and the clock --------------------------------------------------------------
    def launched(self, instance: Instance, account: str, region: str, market: str) -> Machine:
        now = time.monotonic()
        life = InstanceLife(
            instance_id=instance.id,
            instance_type=instance.instance_type,
            market=market,
            zone=instance.availability_zone or "",
            launched_at=utc_iso(),
            tags={tag["key"]: tag["value"] for tag in instance.get_tags()},
        )
        self.record.launched(life)
        worker = self.config.worker
        sandbox = None
        if worker.enabled:
            root = self.sandbox_root / instance.id
            sandbox = Sandbox(root, worker.efs_root, worker.mount_fails, self.endpoint_url)
            sandbox.env["AWSSIM_MOUNT_SECONDS"] = str(self.config.clock.mount_seconds)
            sandbox.s3_upload_dies(worker.s3_upload_dies)
            if self.endpoint_url:  # the instance metadata (IMDSv2) is the simulator's
                sandbox.env.setdefault("AWSJOBS_IMDS_URL", url_of(self.endpoint_url, instance.id))
        user_data = instance.user_data.decode() if instance.user_data else ""
        machine = Machine(instance.id, account, region, life, market, user_data, sandbox)
        machine.due = now + self.config.clock.boot_seconds
        self.machines[instance.id] = machine
        self._set_state(machine, "pending")
        return machine

    def tick(self, now: float) -> None:
        for machine in list(self.machines.values()):
            if machine.registered(now):
                machine.agent_seen = True
            if machine.sandbox is not None:
                for name, args in machine.sandbox.new_requests():
                    self._shim_call(machine, name, args, now)
            if machine.halt_at is not None and now >= machine.halt_at:
                self._halt(machine, now)
            if machine.spot_terminate_at is not None and now >= machine.spot_terminate_at:
                machine.spot_terminate_at = None
                self.go_down(machine, "terminated", SPOT_TERMINATION, now)
            if machine.next_state is not None and now >= machine.due:
                self._arrive(machine, now)

    def _arrive(self, machine: Machine, now: float) -> None:
        target, machine.next_state = machine.next_state, None
        if target == "running":
            self._boot(machine, now)
        elif target == "terminated":
            self._finish_termination(machine)
        elif target == "stopped":
            self._set_state(machine, "stopped", stop=True)
            self._set_reason(machine, machine.life.state_reason or USER_SHUTDOWN)
            machine.life.stop_billing()

    def _boot(self, machine: Machine, now: float) -> None:
        self._set_state(machine, "running")
        machine.agent_online_at = now + self.config.clock.agent_register_seconds
        first_boot = not machine.booted_once
        machine.booted_once = True
        if machine.sandbox is None:
            return
        folder = machine.sandbox.root / PER_BOOT_DIR
        lines = [f'for f in {shlex.quote(str(folder))}/*; do [ -x "$f" ] && "$f"; done']
        if first_boot and machine.user_data.startswith("#!"):
            user_data = machine.sandbox.root / "agent" / "user-data"
            user_data.write_text(machine.sandbox.rewrite(machine.user_data))
            lines.append(f"bash {shlex.quote(str(user_data))}")
        machine.sandbox.spawn("\n".join(lines) + "\n", "boot")

    # -- going down --------------------------------------------------------------------------
    def go_down(self, machine: Machine, end_state: str, reason: str, now: float) -> None:
        """shutting-down → terminated (or stopping → stopped) after the configured delay."""
        if machine.state in GONE or machine.state in ("stopping", "stopped"):
            return
        self._kill(machine, end_state)
        machine.halt_at = None
        machine.agent_online_at = None
        machine.life.state_reason = reason
        self._set_state(machine, "shutting-down" if end_state == "terminated" else "stopping")
        self._set_reason(machine, reason)
        machine.next_state = end_state
        machine.due = now + self.config.clock.shutting_down_seconds

    def _finish_termination(self, machine: Machine) -> None:
        instance = self.moto_instance(machine)
        if instance is not None and not machine.torn_down:
            instance.terminate()  # moto's teardown: NICs, DeleteOnTermination volumes
        machine.torn_down = True
        self._set_state(machine, "terminated")
        self._set_reason(machine, machine.life.state_reason or USER_SHUTDOWN)
        machine.life.terminated_at = utc_iso()
        machine.life.stop_billing()

    def _halt(self, machine: Machine, now: float) -> None:
        machine.halt_at = None
        if machine.halt_reboots:
            self.reboot(machine, now)
            return
        instance = self.moto_instance(machine)
        behaviour = instance.instance_initiated_shutdown_behavior if instance else "stop"
        end_state = "terminated" if behaviour == "terminate" else "stopped"
        self.go_down(machine, end_state, INSTANCE_SHUTDOWN, now)

    def _kill(self, machine: Machine, why: str) -> None:
        if machine.sandbox is not None:
            machine.sandbox.kill_all()
        for listener in self.down_listeners:
            listener(machine, why)

    # -- what AWS's API or someone else did ---------------------------------------------------
    def api_terminated(self, instance_ids: list[str], now: float) -> None:
        """TerminateInstances answered: moto has torn the instances down already."""
        for machine in self._known(instance_ids):
            machine.torn_down = True
            self.go_down(machine, "terminated", USER_SHUTDOWN, now)

    def api_stopped(self, instance_ids: list[str], now: float) -> None:
        for machine in self._known(instance_ids):
            self.go_down(machine, "stopped", USER_SHUTDOWN, now)

    def api_started(self, instance_ids: list[str], now: float) -> None:
        for machine in self._known(instance_ids):
            if machine.state == "stopped":
                self._set_state(machine, "pending")
                machine.next_state, machine.due = "running", now + self.config.clock.boot_seconds
                machine.life.billing_since = now

    def reboot(self, machine: Machine, now: float) -> None:
        """Processes die, tmpfs is emptied, the scheduled shutdown is lost; per-boot scripts
        (not user data) run when it is back. EC2 keeps saying `running` meanwhile."""
        if machine.state != "running":
            return
        self.record.events["reboot"] += 1
        self._kill(machine, "rebooted")
        if machine.sandbox is not None:
            machine.sandbox.wipe_tmpfs()
        machine.halt_at = None
        machine.agent_online_at = None
        machine.next_state, machine.due = "running", now + self.config.clock.reboot_seconds

    def interrupt_spot(self, machine: Machine, now: float) -> None:
        """The two-minute notice (instance metadata `spot/instance-action`), then termination."""
        if machine.market != "spot":
            raise ValueError(f"{machine.instance_id} is not a spot instance")
        self.record.events["spot-interruption"] += 1
        at = now + self.config.clock.spot_notice_seconds
        if machine.sandbox is not None:
            notice = machine.sandbox.root / "meta-data" / "spot" / "instance-action"
            notice.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.fromtimestamp(time.time() + at - now, timezone.utc)
            notice.write_text(
                json.dumps({"action": "terminate", "time": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")})
            )
        machine.spot_terminate_at = at

    def terminate_by_someone_else(self, machine: Machine, now: float) -> None:
        self.record.events["external-termination"] += 1
        self.go_down(machine, "terminated", USER_SHUTDOWN, now)

    # -- the instance's own requests (shims) -----------------------------------------------
    def _shim_call(self, machine: Machine, name: str, args: str, now: float) -> None:
        machine.shim_calls.append(f"{name} {args}".strip())
        clock = self.config.clock
        words = args.split()
        if name in ("poweroff", "halt", "reboot"):
            machine.halt_at, machine.halt_reboots = now + clock.halt_delay_seconds, name == "reboot"
        elif name == "shutdown" and "-c" in words:
            machine.halt_at = None
        elif name == "shutdown":
            when = next((w for w in words if not w.startswith("-")), "+1")
            minutes = 0.0 if when == "now" else _minutes(when)
            delay = max(clock.halt_delay_seconds, minutes * clock.shutdown_minute_seconds)
            machine.halt_at, machine.halt_reboots = now + delay, "-r" in words

    # -- moto's model ------------------------------------------------------------------------
    def moto_instance(self, machine: Machine) -> Instance | None:
        """moto's model of the instance; None once a reset has dropped it."""
        backend = ec2_backends[machine.account][machine.region]
        try:
            instance: Instance = backend.get_instance(machine.instance_id)
        except InvalidInstanceIdError:
            return None
        return instance

    def _set_state(self, machine: Machine, state: str, stop: bool = False) -> None:
        machine.state = state
        instance = self.moto_instance(machine)
        if instance is not None:
            if stop:
                instance.stop()  # moto's own stop bookkeeping, then our state and reason
            instance._state = InstanceState(state, STATE_CODES[state])

    def _set_reason(self, machine: Machine, code: str) -> None:
        instance = self.moto_instance(machine)
        if instance is None:
            return
        instance.state_reason = StateReason(f"{code}: {REASON_MESSAGES[code]}", code)
        who = "Service" if code.startswith("Server.") else "User"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        instance._reason = f"{who} initiated ({stamp} GMT)"

    def _known(self, instance_ids: list[str]) -> list[Machine]:
        return [self.machines[i] for i in instance_ids if i in self.machines]


def _minutes(when: str) -> float:
    """`+N` minutes; an absolute `hh:mm` is taken as one minute (tests use `+N` or `now`)."""
    try:
        return float(when.lstrip("+"))
    except ValueError:
        return 1.0
