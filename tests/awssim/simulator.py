"""The simulator's core: every AWS call moto serves passes through `Simulator.handle`.

One lock guards the simulator's state and moto's models while a hook runs; calls no hook
needs (and hooks answering PASS) go to moto outside the lock, so a slow DescribeInstanceTypes
does not hold the clock up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import BaseResponse
from werkzeug.exceptions import HTTPException

from .agent import STATUS_OF_DETAILS, Agent
from .config import LOST_ANSWER, SimConfig
from .consistency import Visibility
from .ec2 import Ec2Hooks
from .errors import Answer, error_answer
from .faults import Fault, FaultPlan
from .fleets import FleetHooks
from .machines import Fleet, Machine
from .record import Record
from .schedules import fire
from .ssm import SsmHooks
from .world import PASS, Hook, World


class UnknownInstance(KeyError):
    pass


class Simulator:
    def __init__(self, config: SimConfig, sandbox_root: Path) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.sandbox_root = sandbox_root
        self.endpoint_url = ""  # set once served (`serve_at`)
        self.local = threading.local()  # the lost-answer fault of this request's thread
        self._fresh()

    def _fresh(self) -> None:
        record = Record()
        fleet = Fleet(self.config, record, self.sandbox_root)
        fleet.endpoint_url = self.endpoint_url
        agent = Agent(self.config, fleet)
        self.world = World(self.config, record, fleet, agent, Visibility())
        self.plan = FaultPlan(self.config.seed)
        self.hooks: dict[tuple[str, str], Hook] = {}
        ec2 = Ec2Hooks(self.world)
        for service, table in (
            ("ec2", ec2.table()),
            ("ec2", FleetHooks(self.world, ec2).table()),
            ("ssm", SsmHooks(self.world).table()),
        ):
            for action, hook in table.items():
                self.hooks[(service, action)] = hook

    def serve_at(self, endpoint_url: str) -> None:
        """Where the simulator answers: the workers' `aws` shim calls it there."""
        with self.lock:
            self.endpoint_url = endpoint_url
            self.world.fleet.endpoint_url = endpoint_url

    @property
    def record(self) -> Record:
        return self.world.record

    # -- the dispatcher ----------------------------------------------------------------------
    def handle(self, response: BaseResponse, original: Callable[[], Answer]) -> Answer:
        service, action = str(response.service_name), response._get_action()
        with self.lock:
            self._advance()
            self.record.call(service, action)
            fault = self.plan.draw(self.config.faults, service, action)
            if fault is not None and not fault.lost_answer:
                self.record.fault(service, action, fault.code)
                return error_answer(response, fault.code, status=fault.status)
            hook = self.hooks.get((service, action))
            answer = _guarded(hook, response, original) if hook else PASS
            if fault is not None:  # applied; its answer will be lost on the way back
                self.record.fault(service, action, LOST_ANSWER)
                self.local.lost = fault
        return answer if answer is not PASS else original()

    def take_lost_answer(self) -> Fault | None:
        """The lost-answer fault of the call this thread just served, if any (then cleared)."""
        fault: Fault | None = getattr(self.local, "lost", None)
        self.local.lost = None
        return fault

    # -- the clock ---------------------------------------------------------------------------
    def tick(self) -> None:
        with self.lock:
            self._advance()

    def _advance(self) -> None:
        now = time.monotonic()
        self.world.agent.tick(now)  # finished commands first: a halt must not hide them
        self.world.fleet.tick(now)

    # -- switches and levers -----------------------------------------------------------------
    def configure(self, changes: Mapping[str, Any]) -> None:
        with self.lock:
            self.config.update(changes)
            if "seed" in changes:
                self.plan = FaultPlan(self.config.seed)

    def reset(self) -> None:
        """moto's state and the simulator's (processes killed); the configuration stays."""
        from moto.moto_api._internal.models import moto_api_backend

        with self.lock:
            self.shutdown()
            moto_api_backend.reset()
            self._fresh()

    def shutdown(self) -> None:
        """Kill every process the simulated instances started."""
        with self.lock:
            for machine in self.world.fleet.machines.values():
                if machine.sandbox is not None:
                    machine.sandbox.kill_all()
            self.world.agent.kill_all()

    def machine(self, instance_id: str) -> Machine:
        machine = self.world.fleet.machines.get(instance_id)
        if machine is None:
            raise UnknownInstance(instance_id)
        return machine

    def interrupt_spot(self, instance_id: str) -> None:
        with self.lock:
            self.world.fleet.interrupt_spot(self.machine(instance_id), time.monotonic())

    def reboot(self, instance_id: str) -> None:
        with self.lock:
            self.world.fleet.reboot(self.machine(instance_id), time.monotonic())

    def terminate(self, instance_id: str) -> None:
        """Terminated on AWS's side by someone else (console, another tool)."""
        with self.lock:
            self.world.fleet.terminate_by_someone_else(self.machine(instance_id), time.monotonic())

    def settle(self, ids: list[str]) -> None:
        """AWS catches up now: these ids are found and listed (`consistency.py`)."""
        with self.lock:
            self.world.visibility.settle(ids)

    def fire_schedule(self, group: str, name: str) -> dict[str, Any]:
        """Perform an EventBridge Scheduler schedule's target now (`schedules.py`)."""
        fired = fire(self.lock, self.endpoint_url, group, name)
        with self.lock:
            self.record.events["schedule-fired"] += 1
        return fired

    def force_invocation(
        self, command_id: str, instance_id: str, details: str, response_code: int = -1
    ) -> None:
        """Give an invocation any of AWS's StatusDetails (e.g. "Terminated")."""
        if details not in STATUS_OF_DETAILS:
            raise ValueError(f"unknown StatusDetails {details!r}")
        with self.lock:
            invocation = self.world.agent.find(command_id, instance_id)
            if invocation is None:
                raise UnknownInstance(f"{command_id}/{instance_id}")
            self.world.agent.finish(invocation, details, response_code)

    def state(self) -> dict[str, Any]:
        with self.lock:
            self._advance()
            now = time.monotonic()
            return {
                "config": self.config.to_json(),
                "record": self.record.to_json(),
                "instances": [m.to_json(now) for m in self.world.fleet.machines.values()],
                "invocations": [
                    {
                        "command_id": i.command_id,
                        "instance_id": i.instance_id,
                        "status": i.fields["Status"],
                        "status_details": i.fields["StatusDetails"],
                        "response_code": i.fields["ResponseCode"],
                    }
                    for i in self.world.agent.invocations
                ],
            }


def _guarded(hook: Hook, response: BaseResponse, original: Callable[[], Answer]) -> Answer | None:
    """Run a hook; moto's own exceptions become AWS answers, as in moto's dispatcher."""
    try:
        return hook(response, original)
    except ServiceException as error:
        return error_answer(response, error.code, error.message)
    except HTTPException as error:
        return error.code or 500, dict(error.get_headers() or []), error.description or ""
