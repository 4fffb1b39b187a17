"""A tap on the simulator's dispatcher: which job each AWS call concerns, which faults hit which
job, and kill triggers that SIGKILL the server at the moment a call is applied.

The simulator's record counts faults per kind and per action, not per job, and it has no
listener for "this call was just applied": both are got here by wrapping, in this process,
`Simulator.handle` (every call passes through it) and `Record.fault` (called in the thread
serving the call). Nothing of the simulator's behaviour changes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import BaseResponse

from tests.awssim import SimulatedAWS

JOB_TAG = "awsjobs:job-id"
Answer = Any  # moto's (status, headers, body)
Original = Callable[[], Answer]
Handle = Callable[[BaseResponse, Original], Answer]
MAX_LOGGED_FAULTS = 100  # per job, in its sequence


@dataclass
class Trigger:
    """Kill the server when a call of one of `actions` ("service:Action") is applied, for
    `job` (None: any job). `delay` 0: before its answer leaves; above 0: that long after."""

    kind: str
    actions: frozenset[str]
    job: str | None = None
    delay: float = 0.0
    armed_at: float = field(default_factory=time.monotonic)

    def matches(self, call: str, jobs: Iterable[str]) -> bool:
        return call in self.actions and (self.job is None or self.job in jobs)


@dataclass(frozen=True)
class Kill:
    """A server kill that happened: how it was meant, on which call and job, when."""

    kind: str
    call: str
    jobs: tuple[str, ...]
    at: float  # time.time()


class Tap:
    def __init__(self, aws: SimulatedAWS, crash: Callable[[], bool]) -> None:
        self._crash = crash
        self._lock = threading.Lock()
        self._local = threading.local()
        self._triggers: list[Trigger] = []
        self.kills: list[Kill] = []
        self.job_faults: dict[str, Counter[str]] = {}  # job id → fault kind → n
        # job id → (time.time(), "Action: kind"), in order: the sequence a job went through.
        self.job_fault_log: dict[str, list[tuple[float, str]]] = {}
        self.shared_faults: Counter[str] = Counter()  # faults of calls about no single job
        simulator = aws.simulator
        self._instances = simulator.record.instances
        self._handle: Handle = simulator.handle
        self._record_fault = simulator.record.fault
        # No per-call listener in the simulator: wrap its two entry points (see above).
        simulator.handle = self._on_call
        simulator.record.fault = self._on_fault

    # -- kill triggers ------------------------------------------------------------------------
    def arm(self, trigger: Trigger) -> None:
        with self._lock:
            self._triggers.append(trigger)

    def expired(self, older_than: float) -> list[Trigger]:
        """Take out the triggers armed more than `older_than` seconds ago."""
        now = time.monotonic()
        with self._lock:
            old = [t for t in self._triggers if now - t.armed_at > older_than]
            self._triggers = [t for t in self._triggers if t not in old]
        return old

    def armed(self) -> int:
        with self._lock:
            return len(self._triggers)

    def disarm_all(self) -> None:
        with self._lock:
            self._triggers.clear()

    def kill_now(self, kind: str, call: str = "", jobs: tuple[str, ...] = ()) -> bool:
        if not self._crash():
            return False
        with self._lock:
            self.kills.append(Kill(kind, call, jobs, time.time()))
        return True

    # -- the wrapped entry points -------------------------------------------------------------
    def _on_call(self, response: BaseResponse, original: Original) -> Answer:
        call = f"{response.service_name}:{response._get_action()}"
        jobs = self.jobs_of(response)
        self._local.jobs = jobs
        try:
            answer = self._handle(response, original)
        finally:
            self._local.jobs = ()
        if isinstance(answer, tuple) and answer and answer[0] == 200:
            self._fire(call, jobs)
        return answer

    def _on_fault(self, service: str, action: str, kind: str) -> None:
        self._record_fault(service, action, kind)
        jobs: tuple[str, ...] = getattr(self._local, "jobs", ())
        with self._lock:
            if len(jobs) == 1:
                self.job_faults.setdefault(jobs[0], Counter())[kind] += 1
                entries = self.job_fault_log.setdefault(jobs[0], [])
                if len(entries) < MAX_LOGGED_FAULTS:
                    entries.append((time.time(), f"{action}: {kind}"))
            else:
                self.shared_faults[kind] += 1

    def _fire(self, call: str, jobs: tuple[str, ...]) -> None:
        with self._lock:
            trigger = next((t for t in self._triggers if t.matches(call, jobs)), None)
            if trigger is None:
                return
            self._triggers.remove(trigger)
        if trigger.delay <= 0:
            if not self.kill_now(trigger.kind, call, jobs):
                self.arm(trigger)  # the server was down: wait for the next such call
            return
        timer = threading.Timer(trigger.delay, self.kill_now, (trigger.kind, call, jobs))
        timer.daemon = True
        timer.start()

    # -- which jobs a call is about -----------------------------------------------------------
    def jobs_of(self, response: BaseResponse) -> tuple[str, ...]:
        """The job ids a call names: by the job tag (a launch's tags, a tag filter) or by
        the instances it names (their tags at launch)."""
        jobs: set[str] = set()
        for spec in response._get_param("TagSpecifications", []) or []:
            jobs.update(_tag_values(spec.get("Tags", [])))
        ids = list(response._get_param("InstanceIds", []) or [])
        single = response._get_param("InstanceId")
        if isinstance(single, str):
            ids.append(single)
        for item in response._get_param("Filters", []) or []:
            if not isinstance(item, Mapping):
                continue
            if item.get("Name") == f"tag:{JOB_TAG}":
                jobs.update(str(v) for v in item.get("Values", []))
            elif item.get("Name") == "instance-id":
                ids.extend(str(v) for v in item.get("Values", []))
        for iid in ids:
            life = self._instances.get(iid)
            if life is not None and JOB_TAG in life.tags:
                jobs.add(life.tags[JOB_TAG])
        return tuple(sorted(jobs))


def _tag_values(tags: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(t.get("Value")) for t in tags if t.get("Key") == JOB_TAG]
