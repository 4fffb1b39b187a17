"""The seeded plan of a chaos run: the jobs, the faults, and the steps in order.

A plan is a list of steps the driver takes one after the other, each after a pause: submit a
job, stop one, arm a server kill, interrupt a spot instance, reboot or terminate a worker from
outside, open or close a capacity shortage. The same seed gives the same plan; what AWS does
in reply depends on timing, as on AWS.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .timing import MINUTE

# Where the server is SIGKILLed. Every kind of the list is used once before any repeats.
KILL_KINDS = (
    "during-upload",  # an S3 job's inputs are being uploaded (its instance booting meanwhile)
    "launch-unanswered",  # RunInstances (or CreateFleet) applied, its answer not yet sent
    "after-launch",  # RunInstances (or CreateFleet) answered, the server killed 0-50 ms later
    "send-command-unanswered",  # SendCommand applied, its answer not yet sent
    "while-stopping",  # a Stop's TerminateInstances or CancelCommand applied, not answered
    "at-random",  # whenever the step comes
)
WORKER_EVENTS = ("spot-interruption", "reboot", "external-termination")


@dataclass(frozen=True)
class JobSpec:
    """One job: a bash script that sleeps then exits; lifetime in (scaled) minutes."""

    name: str
    sleep_seconds: float
    exit_code: int
    lifetime_minutes: int
    spot: bool

    @property
    def kind(self) -> str:
        if self.sleep_seconds >= self.lifetime_minutes * MINUTE:
            return "times out"
        return "succeeds" if self.exit_code == 0 else "fails"


@dataclass(frozen=True)
class Step:
    pause: float  # seconds before the step
    action: str  # submit | stop-newest | stop-running | kill | worker | capacity-on/off |
    # s3-dies-on/off
    detail: str = ""  # the kill kind, the worker event
    job: JobSpec | None = None


@dataclass(frozen=True)
class Plan:
    seed: int
    steps: list[Step]
    faults: list[dict[str, Any]]
    jobs: int
    kills: int


def mix(the_plan: Plan) -> str:
    """The jobs of a plan in one line: how many succeed, fail, time out; how many on spot."""
    specs = [step.job for step in the_plan.steps if step.job is not None]
    kinds = Counter(spec.kind for spec in specs)
    spot = sum(1 for spec in specs if spec.spot)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + f"; {spot} on spot"


def make_plan(seed: int, jobs: int, kills: int, short: bool) -> Plan:
    rng = random.Random(seed)
    specs = [_job_spec(rng, i, short) for i in range(jobs)]
    steps = [Step(rng.uniform(0.1, 0.8), "submit", job=spec) for spec in specs]
    extra: list[Step] = []
    kinds = list(KILL_KINDS[1:])
    rng.shuffle(kinds)
    kinds.insert(0, KILL_KINDS[0])  # the first server has storage "s3": its kill is this one
    for _ in range(kills):
        extra.append(Step(rng.uniform(0.2, 1.0), "kill"))
    stops = max(2, jobs // 8)
    for i in range(stops):
        extra.append(Step(rng.uniform(0.0, 0.3), "stop-newest" if i % 2 else "stop-running"))
    for i in range(max(3, jobs // 6)):
        extra.append(Step(rng.uniform(0.2, 1.0), "worker", WORKER_EVENTS[i % 3]))
    # Everything lands between submissions, never before the first two.
    for step in extra:
        steps.insert(rng.randint(2, len(steps)), step)
    # The kinds in the order the kills come: the first (S3's upload) while the first server runs.
    order = iter(range(kills))
    steps = [
        dataclasses.replace(s, detail=kinds[next(order) % len(kinds)]) if s.action == "kill" else s
        for s in steps
    ]
    # A window in which workers die in the middle of uploading their outputs (S3 mode).
    start = rng.randint(2, len(steps) - 1)
    steps.insert(start, Step(0.0, "s3-dies-on"))
    steps.insert(min(len(steps), start + rng.randint(4, 10)), Step(0.0, "s3-dies-off"))
    for i in range(2 if short else 4):  # capacity shortages, each over a few steps
        start = rng.randint(2, len(steps) - 1)
        kind = SHORTAGE_KINDS[i % len(SHORTAGE_KINDS)]
        steps.insert(start, Step(0.0, "capacity-on", kind))
        steps.insert(min(len(steps), start + rng.randint(4, 12)), Step(0.0, "capacity-off"))
    return Plan(seed, steps, fault_rules(short), jobs, kills)


def _job_spec(rng: random.Random, index: int, short: bool) -> JobSpec:
    """One in eight runs past its max lifetime (the instance halts itself), one in four of the
    rest exits non-zero, the others succeed; about a third run on spot."""
    spot = rng.random() < 0.35
    if index % 8 == 5:
        return JobSpec(f"job{index:03d}", 120.0, 0, rng.choice((4, 5, 6)), spot)
    exit_code = rng.choice((1, 2, 3, 42)) if index % 4 == 2 else 0
    sleep = round(rng.uniform(1.0, 8.0), 2)
    return JobSpec(f"job{index:03d}", sleep, exit_code, 20 if short else 30, spot)


def fault_rules(short: bool) -> list[dict[str, Any]]:
    """Faults drawn at random (the simulator's seeded RNG) from every call type the app makes:
    lost answers for the calls whose outcome then is uncertain (the launch, by RunInstances or
    an instant CreateFleet, the termination, the command), throttling and 5xx
    everywhere. NotFound windows and capacity refusals come from the consistency and capacity
    switches."""
    scale = 1.5 if short else 1.0  # fewer calls in a short run: a little more of each
    return [
        {"action": "RunInstances", "error": "LostAnswer", "probability": 0.1 * scale},
        {"action": "CreateFleet", "error": "LostAnswer", "probability": 0.1 * scale},
        {"action": "TerminateInstances", "error": "LostAnswer", "probability": 0.1 * scale},
        {
            "action": "SendCommand",
            "error": "LostAnswer",
            "probability": 0.08 * scale,
            "delay_seconds": 0.3,
        },
        {"service": "ec2", "action": "*", "error": "RequestLimitExceeded", "probability": 0.04},
        {"service": "ssm", "action": "*", "error": "ThrottlingException", "probability": 0.08},
        {"service": "ec2", "action": "*", "error": "InternalError", "probability": 0.03},
        {"service": "ssm", "action": "*", "error": "InternalServerError", "probability": 0.05},
        {"service": "ec2", "action": "*", "error": "ServiceUnavailable", "probability": 0.02},
    ]


def capacity_shortage(kind: str) -> dict[str, Any]:
    """What a capacity-on step switches on. "capacity": no on-demand offer in us-east-1a
    (the first zone tried), no on-demand capacity in us-east-1b, spot too dear everywhere.
    "quotas": vCPU quotas of one 2-vCPU instance per market (VcpuLimitExceeded,
    MaxSpotInstanceCountExceeded)."""
    if kind == "quotas":
        return {"rules": [], "on_demand_vcpus": {"standard": 2}, "spot_vcpus": {"standard": 2}}
    return {
        "rules": [
            {"error": "Unsupported", "zone": "us-east-1a", "market": "on-demand"},
            {"error": "InsufficientInstanceCapacity", "zone": "us-east-1b", "market": "on-demand"},
            {"error": "SpotMaxPriceTooLow", "market": "spot"},
        ],
        "on_demand_vcpus": {},
        "spot_vcpus": {},
    }


SHORTAGE_KINDS = ("capacity", "quotas")
# The fault kinds a full run should inject (the rules above, the consistency windows, the SSM
# agent's late registration and the capacity shortage); the report names any it missed.
EXPECTED_KINDS = (
    "LostAnswer",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "InvalidInstanceID.NotFound",
    "InvalidInstanceId",
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "Unsupported",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
)
NO_SHORTAGE: dict[str, Any] = {"rules": [], "on_demand_vcpus": {}, "spot_vcpus": {}}
