"""The invariants of a chaos run, judged on the truth (the simulator's instances, its record
and the worker's effects on the shared file system) against the app's view (its jobs):

- no leak: no managed instance pending, running, stopping or stopped (billed) without an
  active job;
- no job final while its instance still runs (sampled during the run, and at the end);
- every job final with a reason (an exit code 0, else an error), none still active after the
  bounded wait;
- none run twice in one attempt: the job's script logs each run with its `AWSJOBS_ATTEMPT`
  (`runs/<job id>`, written by the worker); a recovered spot job runs once per attempt.

And the cost of the chaos: instance-seconds beyond what the jobs needed (after a job ended,
on an instance that never ran it, all of it for a job whose script never ran), per fault kind
or event that touched the job.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOB_TAG = "awsjobs:job-id"
MANAGED_TAG = "awsjobs:managed"
FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "stopped", "interrupted"})
BILLED_STATES = frozenset({"pending", "running", "stopping", "stopped"})
# A job read as final before this much of the sampling interval may have ended just before.
SIGHTING_TOLERANCE = 0.5

Json = dict[str, Any]


def is_final(job: Mapping[str, Any]) -> bool:
    return job.get("state") in FINAL_STATES


def managed_lives(state: Mapping[str, Any]) -> dict[str, Json]:
    """The record's instances launched by the app (tag awsjobs:managed=true), by id."""
    return {
        life["instance_id"]: life
        for life in state["record"]["instances"]
        if life["tags"].get(MANAGED_TAG) == "true"
    }


def alive_instances(state: Mapping[str, Any]) -> list[Json]:
    """Managed instances pending, running, stopping or stopped, each with its job's id."""
    lives = managed_lives(state)
    return [
        {**machine, "job": lives[machine["instance_id"]]["tags"].get(JOB_TAG)}
        for machine in state["instances"]
        if machine["instance_id"] in lives and machine["state"] in BILLED_STATES
    ]


@dataclass(frozen=True)
class Sighting:
    """A job read as final while its instance was alive."""

    job: str
    instance: str
    instance_state: str
    job_state: str
    finished_at: float
    seen_at: float


@dataclass
class Sampler:
    """Samples taken during the run: the first sighting of each (job, instance) pair."""

    sightings: dict[tuple[str, str], Sighting] = field(default_factory=dict)
    samples: int = 0

    def sample(self, jobs: Iterable[Mapping[str, Any]], state: Mapping[str, Any]) -> None:
        """`jobs` must have been read before `state`: a job final then was final before the
        instance states were read."""
        seen_at = time.time()
        self.samples += 1
        by_id = {str(j["id"]): j for j in jobs}
        for machine in alive_instances(state):
            job = by_id.get(str(machine["job"]))
            if job is None or not is_final(job):
                continue
            finished = float(job.get("finished_at") or job.get("updated_at") or 0.0)
            key = (str(job["id"]), str(machine["instance_id"]))
            if finished + SIGHTING_TOLERANCE < seen_at and key not in self.sightings:
                self.sightings[key] = Sighting(
                    key[0], key[1], machine["state"], job["state"], finished, seen_at
                )


@dataclass
class KindCost:
    jobs: int = 0
    leftover_seconds: float = 0.0
    worst_seconds: float = 0.0
    worst_job: str = ""

    def add(self, job: str, seconds: float) -> None:
        self.jobs += 1
        self.leftover_seconds += seconds
        if seconds > self.worst_seconds or not self.worst_job:
            self.worst_seconds, self.worst_job = seconds, job


@dataclass
class Verdict:
    jobs: list[Json]
    leaks: list[Json]
    final_while_alive: list[Sighting]
    without_reason: list[str]
    still_active: list[str]
    runs: dict[str, int]  # job id → times the worker ran its script (all attempts)
    reruns: dict[str, int]  # job id → runs beyond one per attempt (must be none)
    leftover: dict[str, float]  # job id → instance-seconds beyond what it needed
    needed_seconds: float
    instance_seconds: float
    per_kind: dict[str, KindCost]

    @property
    def run_twice(self) -> dict[str, int]:
        """Jobs whose script ran more than once in one attempt. A spot job recovered after
        an interruption runs again on purpose, once per attempt (`AWSJOBS_ATTEMPT`)."""
        return {job: n for job, n in self.reruns.items() if n > 0}

    @property
    def violations(self) -> int:
        return (
            len(self.leaks)
            + len(self.final_while_alive)
            + len(self.without_reason)
            + len(self.still_active)
            + len(self.run_twice)
        )


def judge(
    jobs: list[Json],
    state: Mapping[str, Any],
    sampler: Sampler,
    runs_dir: Path,
    touched: Mapping[str, Iterable[str]],
) -> Verdict:
    """The verdict at the end of a run. `touched`: job id → the fault kinds and events that
    touched it (for the cost per kind)."""
    by_id = {str(j["id"]): j for j in jobs}
    sampler.sample(jobs, state)
    leaks = [
        m for m in alive_instances(state) if m["job"] not in by_id or is_final(by_id[str(m["job"])])
    ]
    attempts = {i: _attempts(runs_dir, i) for i in by_id}
    runs = {i: len(a) for i, a in attempts.items()}
    reruns = {i: len(a) - len(set(a)) for i, a in attempts.items()}
    leftover, needed = _leftover(by_id, managed_lives(state), runs)
    per_kind: dict[str, KindCost] = {}
    for job_id in sorted(by_id):
        for kind in sorted(set(touched.get(job_id, ())) or {"(nothing)"}):
            per_kind.setdefault(kind, KindCost()).add(job_id, leftover.get(job_id, 0.0))
    return Verdict(
        jobs=jobs,
        leaks=leaks,
        final_while_alive=list(sampler.sightings.values()),
        without_reason=[i for i, j in by_id.items() if is_final(j) and not _has_reason(j)],
        still_active=[i for i, j in by_id.items() if not is_final(j)],
        runs=runs,
        reruns=reruns,
        leftover=leftover,
        needed_seconds=needed,
        instance_seconds=float(state["record"]["instance_seconds"]),
        per_kind=per_kind,
    )


def _has_reason(job: Mapping[str, Any]) -> bool:
    """Succeeded: exit code 0. Any other end: an error, or the reason of its last move."""
    if job["state"] == "succeeded":
        return job.get("exit_code") == 0
    history = job.get("history") or [{}]
    return bool(str(job.get("error") or history[-1].get("reason") or "").strip())


def _attempts(runs_dir: Path, job_id: str) -> list[str]:
    """The attempt number of each run of the job's script (one line per run)."""
    try:
        lines = (runs_dir / job_id).read_text().splitlines()
    except OSError:
        return []
    return [line.split()[0] for line in lines if line.strip()]


def _leftover(
    jobs: Mapping[str, Json], lives: Mapping[str, Json], runs: Mapping[str, int]
) -> tuple[dict[str, float], float]:
    """Per job, instance-seconds beyond what it needed: on the instance that ran it, after the
    job ended; all of every other instance of the job, and all of any instance of a job
    whose script never ran. Also the total needed."""
    of_job: dict[str, list[Json]] = {}
    for life in lives.values():
        of_job.setdefault(str(life["tags"].get(JOB_TAG)), []).append(life)
    leftover: dict[str, float] = {}
    needed_total = 0.0
    for job_id, its in of_job.items():
        job = jobs.get(job_id, {})
        runner = _runner(job, its) if runs.get(job_id, 0) else None
        wasted = 0.0
        for life in its:
            seconds = float(life["instance_seconds"])
            needed = _needed(job, life, seconds) if life is runner else 0.0
            needed_total += needed
            wasted += seconds - needed
        leftover[job_id] = round(wasted, 3)
    return leftover, needed_total


def _runner(job: Mapping[str, Any], its: list[Json]) -> Json | None:
    """The instance the job ran on: the recorded one, else its first."""
    recorded = (job.get("handle") or {}).get("instance_id")
    found = next((life for life in its if life["instance_id"] == recorded), None)
    return found or min(its, key=lambda life: str(life["launched_at"]), default=None)


def _needed(job: Mapping[str, Any], life: Mapping[str, Any], seconds: float) -> float:
    launched = epoch(str(life["launched_at"]))
    ended = job.get("finished_at")
    if launched is None or ended is None:
        return seconds
    return max(0.0, min(seconds, float(ended) - launched))


def epoch(iso: str) -> float | None:
    """Seconds since the epoch of an ISO time as the record writes it (…Z)."""
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fault_kinds(record: Mapping[str, Any]) -> Counter[str]:
    """Faults injected by kind (error code, LostAnswer, NotFound and capacity refusals)."""
    return Counter({str(k): int(v) for k, v in record.get("faults", {}).items()})
