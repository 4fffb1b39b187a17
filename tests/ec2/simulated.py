"""The simulated AWS (tests/awssim) as the EC2 tests start it: one per test package, reset per
test, with AWS's delays off so that, by default, it behaves like plain moto (instances running
and SSM agents registered as soon as RunInstances answers, no worker running the commands).
A test turns on what it is about: `sim.configure({"consistency": {...}})`, fault rules,
capacity rules, `sim.terminate(iid)`, `sim.force_invocation(...)`.

`instant_boot` is the one addition on top of the simulator: with a zero boot and registration
delay the simulator would still need two clock ticks before SendCommand is accepted, so a test
could see one `InvalidInstanceId` depending on timing; here the instance boots in its launch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.awssim.config import FaultRule, SimConfig
from tests.awssim.machines import Fleet, Machine
from tests.awssim.server import SimulatedAWS

# AWS's delays off; the worker off (commands end `Success` at once, as in moto).
INSTANT: dict[str, Any] = {
    "clock": {
        "tick_seconds": 0.02,
        "boot_seconds": 0.0,
        "agent_register_seconds": 0.0,
        "shutting_down_seconds": 0.0,
        "halt_delay_seconds": 0.0,
        "reboot_seconds": 0.0,
        "spot_notice_seconds": 0.0,
    },
    "worker": {"enabled": False},
}


@contextlib.contextmanager
def simulated_aws() -> Iterator[SimulatedAWS]:
    with SimulatedAWS(SimConfig.from_json(INSTANT)) as aws:
        yield aws


def defaults(sim: SimulatedAWS) -> dict[str, Any]:
    """The whole configuration of a fresh test (sandbox folder kept)."""
    config = SimConfig.from_json(INSTANT).to_json()
    config["worker"]["sandbox_dir"] = sim.config.worker.sandbox_dir
    return config


def instant_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    """With zero boot and registration delays, an instance is running with its SSM agent
    registered when RunInstances answers (see the module docstring)."""
    original = Fleet.launched

    def launched(self: Fleet, instance: Any, account: str, region: str, market: str) -> Machine:
        machine = original(self, instance, account, region, market)
        clock = self.config.clock
        if clock.boot_seconds == 0 and clock.agent_register_seconds == 0:
            now = time.monotonic()
            self.tick(now)  # pending → running, agent online now
            self.tick(now)  # the agent is seen registered
        return machine

    monkeypatch.setattr(Fleet, "launched", launched)


def halt(sim: SimulatedAWS, instance_id: str, reason_code: str) -> None:
    """The instance goes down with this StateReason (`Client.InstanceInitiatedShutdown`,
    `Server.SpotInstanceTermination`, `Client.UserInitiatedShutdown`), as AWS would do it:
    shutting-down, then terminated after the configured delay."""
    simulator = sim.simulator
    with simulator.lock:
        machine = simulator.machine(instance_id)
        simulator.world.fleet.go_down(machine, "terminated", reason_code, time.monotonic())


class Faults:
    """`faults.add("ssm", "SendCommand", "InvalidInstanceId", times=3)`: the next 3 calls fail,
    through the simulator's fault rules (with AWS's HTTP statuses, so botocore retries what it
    would retry on AWS). `faults.calls[("ec2", "RunInstances")]`: calls that reached AWS."""

    def __init__(self, sim: SimulatedAWS) -> None:
        self.sim = sim
        self.rules: list[FaultRule] = []

    def add(self, service: str, action: str, code: str, times: int = 1) -> None:
        # The same rule objects are passed again: the simulator counts injections per rule.
        self.rules.append(FaultRule(action=action, error=code, service=service, count=times))
        self.sim.configure({"faults": list(self.rules)})

    def always(self, service: str, action: str, code: str) -> None:
        self.add(service, action, code, times=10**6)

    @property
    def calls(self) -> dict[tuple[str, str], int]:
        counted = self.sim.record.calls
        return {(k.split(":", 1)[0], k.split(":", 1)[1]): n for k, n in counted.items()}
