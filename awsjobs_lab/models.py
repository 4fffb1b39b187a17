"""The job model: states, allowed transitions and the validated launch request.

Nothing here knows about HTTP, SQLite or AWS; every other module speaks in these types.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import Conflict
from .gpus import GpuNeed


class JobState(str, Enum):
    PENDING = "pending"
    LAUNCHING = "launching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return not self.is_terminal


TERMINAL_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.STOPPED,
        JobState.TIMED_OUT,
        JobState.INTERRUPTED,
    }
)
ACTIVE_STATES = frozenset(set(JobState) - TERMINAL_STATES)

# Every edge of the state machine. A job only ever moves along these; the store refuses others,
# so a late "succeeded" can never overwrite a "stopped" the user asked for.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset(
        {JobState.LAUNCHING, JobState.STOPPING, JobState.FAILED, JobState.STOPPED}
    ),
    JobState.LAUNCHING: frozenset(
        {
            JobState.RUNNING,
            JobState.STOPPING,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.INTERRUPTED,
        }
    ),
    # running → launching: a spot attempt was reclaimed and the job starts its next attempt
    # on a new instance (same id, same log); the history says why.
    JobState.RUNNING: frozenset(
        {
            JobState.LAUNCHING,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.STOPPING,
            JobState.TIMED_OUT,
            JobState.INTERRUPTED,
        }
    ),
    # A stop that cannot be confirmed keeps the job in STOPPING (retried); FAILED only when the
    # backend proves the work is gone but not by our hand.
    JobState.STOPPING: frozenset({JobState.STOPPED, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.STOPPED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
    JobState.INTERRUPTED: frozenset(),
}


# What a spot job does when AWS reclaims its instance (`on_interruption`): "fail" reads
# `interrupted` at once; "retry" starts the next attempt on spot, the last allowed one on
# on-demand; "on_demand" starts every later attempt on on-demand.
ON_INTERRUPTION = ("fail", "retry", "on_demand")
DEFAULT_ON_INTERRUPTION = "retry"
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_LIMIT = 10


def can_transition(current: JobState, target: JobState) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


class InvalidTransition(Conflict):
    """A move the state machine does not allow (HTTP 409 if it ever reaches a handler)."""

    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id} cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def now() -> float:
    """Wall-clock seconds since the epoch; one function so tests and the store agree."""
    return time.time()


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Transition:
    state: JobState
    at: float
    reason: str | None = None
    # Set on a phase change within `launching`/`running` (not a move: `state` is the state the
    # job was in); the store's transition rules never see these entries (`phases.py`).
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state.value, "at": self.at, "reason": self.reason}
        if self.phase is not None:
            data["phase"] = self.phase
        return data


@dataclass
class Attempt:
    """One instance a job ran on (a job interrupted and relaunched has several)."""

    number: int  # 1-based
    spot: bool
    instance_id: str | None = None
    instance_type: str | None = None
    availability_zone: str | None = None
    hourly_price: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None  # a terminal JobState's value, once the attempt has ended
    cost: float | None = None  # USD, once ended (priced backends only)

    def cost_at(self, at: float) -> float | None:
        """What this attempt has cost by `at` (its own cost once it has ended)."""
        if self.ended_at is not None:
            return self.cost
        if self.hourly_price is None or self.started_at is None:
            return None
        return round(self.hourly_price * max(0.0, at - self.started_at) / 3600.0, 6)

    def to_dict(self) -> dict[str, Any]:
        # Field by field, as `Job.to_record` (every value is a scalar: nothing to copy). It runs
        # for each attempt of a job on every store write and every reply.
        return {
            "number": self.number,
            "spot": self.spot,
            "instance_id": self.instance_id,
            "instance_type": self.instance_type,
            "availability_zone": self.availability_zone,
            "hourly_price": self.hourly_price,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "cost": self.cost,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        return cls(**{k: v for k, v in data.items() if k in _ATTEMPT_FIELDS})


_ATTEMPT_FIELDS = frozenset(f.name for f in dataclasses.fields(Attempt))


def attempt_note(number: int, of: int, spot: bool, after_interruption: bool) -> str:
    """ "attempt 2 of 3 (spot interrupted, now on-demand)": the log marker, the history reason
    and the panel's line (`src/format.ts` `attemptNote` says the same)."""
    market = "spot" if spot else "on-demand"
    why = f"spot interrupted, now {market}" if after_interruption else market
    return f"attempt {number} of {of} ({why})"


@dataclass
class Job:
    """One job. `handle` is the backend's own record (pid, instance id, command id, ...),
    persisted as soon as it is known so Stop and status work from the store after a restart."""

    id: str
    path: str  # relative to the server root, '/'-separated
    backend: str
    state: JobState
    created_at: float
    updated_at: float
    memory_gib: float
    cpus: int
    spot: bool
    max_lifetime_minutes: int
    log_path: str  # relative to the server root
    env: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # after the script (.py, .R, .sh jobs)
    instance_type: str | None = None  # chosen (or requested) instance type, EC2 only
    requested_instance_type: str | None = None
    hourly_price: float | None = None  # USD per hour of the chosen instance, when known
    output_path: str | None = None  # the executed notebook, or the rendered report
    output_format: str | None = None  # a report's format (.Rmd, .qmd: `reports.py`)
    command: list[str] = field(default_factory=list)  # the runner argv, for display
    exit_code: int | None = None
    error: str | None = None
    started_at: float | None = None  # when the work really began (process/instance running)
    finished_at: float | None = None
    stop_requested: bool = False
    handle: dict[str, Any] = field(default_factory=dict)
    history: list[Transition] = field(default_factory=list)
    on_interruption: str = DEFAULT_ON_INTERRUPTION  # spot jobs only: see ON_INTERRUPTION
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # instances a spot job may use, in all
    attempts: list[Attempt] = field(default_factory=list)  # the last one is current
    gpus: int = 0  # at least this many GPUs (backends with the `gpus` capability)
    gpu_memory_gib: float = 0.0  # at least this much memory per GPU
    gpu_model: str | None = None  # e.g. "A10G" (GpuInfo's name, any case)
    phase: str | None = None  # what an active job is waiting for now (`phases.py`); else None
    phase_since: float | None = None  # when that phase began
    schedule: str | None = None  # the schedule that started this job, if any
    # How the job's files reach its worker: "efs", "s3" (EC2), None (on this machine).
    storage: str | None = None
    progress: dict[str, Any] | None = None  # a transfer under way (`staging.Progress`), else None
    notes: list[str] = field(default_factory=list)  # for the user, e.g. an output kept aside

    @property
    def gpu_need(self) -> GpuNeed:
        return GpuNeed(self.gpus, self.gpu_memory_gib, self.gpu_model)

    @property
    def is_active(self) -> bool:
        return self.state.is_active

    @property
    def moves(self) -> list[Transition]:
        """The history's state moves, without its phase entries."""
        return [t for t in self.history if t.phase is None]

    @property
    def instance_id(self) -> str | None:
        value = self.handle.get("instance_id")
        return str(value) if value else None

    @property
    def attempt_number(self) -> int:
        """The current attempt, 1-based (1 before the first launch)."""
        return max(1, len(self.attempts))

    def next_attempt_spot(self) -> bool | None:
        """Whether the next attempt after an interruption runs on spot; None when no attempt
        is left (or the job fails on interruption, or is not a spot job)."""
        following = len(self.attempts) + 1
        if not self.spot or self.on_interruption == "fail" or following > self.max_attempts:
            return None
        return self.on_interruption == "retry" and following < self.max_attempts

    def open_attempt(self, spot: bool) -> Attempt:
        """Start the next attempt (on spot or on-demand): it becomes the current one."""
        attempt = Attempt(number=len(self.attempts) + 1, spot=spot)
        self.attempts.append(attempt)
        return attempt

    def fill_attempt(self, started_at: float | None = None) -> None:
        """Copy what the launch recorded (instance, type, zone, price, market) into the
        current attempt; `started_at` when the job's own is the first attempt's."""
        if not self.attempts:
            return
        attempt = self.attempts[-1]
        attempt.instance_id = self.instance_id or attempt.instance_id
        attempt.instance_type = self.instance_type or attempt.instance_type
        attempt.hourly_price = self.hourly_price
        zone = self.handle.get("availability_zone")
        attempt.availability_zone = str(zone) if zone else attempt.availability_zone
        if isinstance(self.handle.get("spot"), bool):
            attempt.spot = self.handle["spot"]
        attempt.started_at = started_at or attempt.started_at or self.started_at

    def end_attempt(self, outcome: str, at: float) -> None:
        """Close the current attempt (if open) with how it ended and what it cost."""
        if not self.attempts or self.attempts[-1].ended_at is not None:
            return
        attempt = self.attempts[-1]
        if attempt.started_at is not None:
            attempt.cost = attempt.cost_at(at)
        attempt.ended_at = at
        attempt.outcome = outcome

    def deadline(self, start: float | None = None, unit_seconds: float = 60.0) -> float:
        """When the job's max lifetime runs out: from `start` (default: when its work began,
        else when it was created), `max_lifetime_minutes` minutes of `unit_seconds` each (60;
        tests shrink the minute)."""
        if start is None:
            start = self.started_at if self.started_at is not None else self.created_at
        return start + self.max_lifetime_minutes * unit_seconds

    def elapsed_seconds(self, at: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else (at or now())
        return max(0.0, end - self.started_at)

    def cost_so_far(self, at: float | None = None) -> float | None:
        """USD so far: the sum over its attempts, else its price times its elapsed time."""
        if self.attempts:
            costs = [a.cost_at(at or now()) for a in self.attempts]
            known = [c for c in costs if c is not None]
            return round(sum(known), 6) if known else None
        elapsed = self.elapsed_seconds(at)
        if self.hourly_price is None or elapsed is None:
            return None
        return round(self.hourly_price * elapsed / 3600.0, 6)

    # Serialisation is written out field by field on purpose: `dataclasses.asdict` deep-copies
    # every value recursively, which was most of the cost of listing jobs. The containers are
    # copied one level (so a caller cannot alter the job through the result); their contents
    # are JSON values that nothing mutates. Keep the key order: it is the order of the fields
    # above (what `asdict` gave), and `tests/server/test_models.py` pins the exact JSON.

    def to_record(self) -> dict[str, Any]:
        """What the store persists (no derived fields)."""
        return {
            "id": self.id,
            "path": self.path,
            "backend": self.backend,
            "state": self.state.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "memory_gib": self.memory_gib,
            "cpus": self.cpus,
            "spot": self.spot,
            "max_lifetime_minutes": self.max_lifetime_minutes,
            "log_path": self.log_path,
            "env": dict(self.env),
            "parameters": dict(self.parameters),
            "args": list(self.args),
            "instance_type": self.instance_type,
            "requested_instance_type": self.requested_instance_type,
            "hourly_price": self.hourly_price,
            "output_path": self.output_path,
            "output_format": self.output_format,
            "command": list(self.command),
            "exit_code": self.exit_code,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stop_requested": self.stop_requested,
            "handle": dict(self.handle),
            "history": [t.to_dict() for t in self.history],
            "on_interruption": self.on_interruption,
            "max_attempts": self.max_attempts,
            "attempts": [a.to_dict() for a in self.attempts],
            "gpus": self.gpus,
            "gpu_memory_gib": self.gpu_memory_gib,
            "gpu_model": self.gpu_model,
            "phase": self.phase,
            "phase_since": self.phase_since,
            "schedule": self.schedule,
            "storage": self.storage,
            "progress": dict(self.progress) if self.progress is not None else None,
            "notes": list(self.notes),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served by the REST API (mirrored by `src/tokens.ts`): the record
        plus the derived fields."""
        data = self.to_record()
        at = now()
        data["instance_id"] = self.instance_id
        data["elapsed_seconds"] = self.elapsed_seconds(at)
        data["cost_so_far"] = self.cost_so_far(at)
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        # `data` is freshly decoded JSON owned by the caller: its containers are used as is.
        values = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        values["state"] = JobState(values["state"])
        values["history"] = [
            Transition(JobState(t["state"]), float(t["at"]), t.get("reason"), t.get("phase"))
            for t in values.get("history", ())
        ]
        values["attempts"] = [Attempt.from_dict(a) for a in values.get("attempts", ())]
        return cls(**values)


# Unknown keys in a stored record (from a newer version) are ignored by `Job.from_record`.
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Job))


@dataclass(frozen=True)
class Outcome:
    """How a job's work ended, as a backend reports it."""

    state: JobState  # one of the terminal states
    exit_code: int | None = None
    error: str | None = None
