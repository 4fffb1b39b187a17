"""A job's phase: what an active job is waiting for now, finer than its state.

Phases change within `launching` and `running` (they are not states: the store's transition
rules never see them). EC2: `requesting` (choosing a type, asking for capacity), `booting` (the
instance is pending or running, its SSM agent not registered yet), `preparing` (the agent took
the command: mounting the shared file system, staging files), `running` (the job's script
started), `finishing` (the command ended: exit code, outputs, the instance ending). Local jobs
go through `preparing`, `running` and `finishing`.

A backend reports each change through its `phases` sink (the driver's `PhaseRecorder`): one
store write that sets `phase`/`phase_since` and appends a history entry with the phase and its
time, so how long each phase took is known after the job ends (`phase_durations`). Any move of
the job out of `launching`/`running` (or back to `launching`: a new attempt) clears the phase.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any

from .models import Job, JobState, Transition, now
from .store import JobChange, JobStore

REQUESTING = "requesting"
BOOTING = "booting"
PREPARING = "preparing"
RUNNING = "running"
FINISHING = "finishing"
PHASES = (REQUESTING, BOOTING, PREPARING, RUNNING, FINISHING)

# The states within which a job has a phase.
PHASED_STATES = frozenset({JobState.LAUNCHING, JobState.RUNNING})

Logger = logging.Logger | logging.LoggerAdapter[Any]


class PhaseSink:
    """Where a backend reports a job's phase changes. This one forgets them (a backend that no
    driver drives, e.g. in a unit test); the driver gives every backend a `PhaseRecorder`."""

    async def report(self, job_id: str, phase: str) -> None:
        """The job entered `phase` now."""


class PhaseRecorder(PhaseSink):
    """Persists phase changes: one store write each, never raising (a phase is information:
    a store that cannot be written must not fail a launch or a watch)."""

    def __init__(self, store: JobStore, log: Logger) -> None:
        self.store = store
        self.log = log

    async def report(self, job_id: str, phase: str) -> None:
        try:
            await self.store.update(job_id, change=functools.partial(enter, phase, now()))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.log.warning("awsjobs: job %s: cannot record its phase %s: %s", job_id, phase, err)


def enter(phase: str, at: float, job: Job) -> None:
    """`job` enters `phase` at `at` (in the store's write transaction): nothing when the job is
    no longer launching or running, or is in that phase already."""
    if job.state not in PHASED_STATES or job.phase == phase:
        return
    job.phase = phase
    job.phase_since = at
    job.history.append(Transition(job.state, at, None, phase))


def clearing_on(target: JobState, change: JobChange | None) -> JobChange | None:
    """The change of a move to `target`, plus clearing the phase unless the move keeps it
    (launching → running keeps it: an EC2 job is still `preparing` when its launch returns)."""
    if target is JobState.RUNNING:
        return change

    def clear(job: Job) -> None:
        if change is not None:
            change(job)
        job.phase = None
        job.phase_since = None

    return clear


def phase_durations(history: Iterable[Transition], until: float | None = None) -> dict[str, float]:
    """Seconds spent in each phase (summed over attempts), in the order first entered. A phase
    ends at the next phase entry or at a move other than launching → running; the current one
    (an active job) counts until `until` (default: now)."""
    spent: dict[str, float] = {}
    current: tuple[str, float] | None = None
    for entry in history:
        if current is not None and (entry.phase is not None or entry.state is not JobState.RUNNING):
            spent[current[0]] = spent.get(current[0], 0.0) + max(0.0, entry.at - current[1])
            current = None
        if entry.phase is not None:
            current = (entry.phase, entry.at)
            spent.setdefault(entry.phase, 0.0)
    if current is not None:
        end = now() if until is None else until
        spent[current[0]] = spent.get(current[0], 0.0) + max(0.0, end - current[1])
    return spent
