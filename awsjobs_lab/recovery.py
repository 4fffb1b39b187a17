"""Recovery from a spot interruption: whether a job gets another attempt, on which market, and
what the job and its log say about it. The driver (`driver.py`) decides when; this module says
what. Nothing here knows about AWS: an interruption is an `Outcome` in state `interrupted`.

A job interrupted with an attempt left moves `running → launching` (same id, same log) with
its current attempt closed (`interrupted`, its cost) and the next one opened; its handle is
emptied, so nothing of the gone instance is watched, stopped or re-attached again. The backend
launches the next instance with `job.attempt_number` (its ClientToken and tags differ per
attempt) on the attempt's market. If that launch fails, the job ends `interrupted` (its run
could not be resumed) with the launch's error, and the unlaunched attempt reads `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .models import Job, JobState, Outcome, attempt_note, now
from .safeopen import open_regular
from .store import JobChange


@dataclass(frozen=True)
class Relaunch:
    """The attempt a job starts after an interruption."""

    number: int  # 1-based
    of: int  # the job's max_attempts
    spot: bool

    @property
    def note(self) -> str:
        """ "attempt 2 of 3 (spot interrupted, now on-demand)"."""
        return attempt_note(self.number, self.of, self.spot, after_interruption=True)

    @property
    def log_line(self) -> str:
        """The line that marks the new attempt in the job's log."""
        return f"--- awsjobs: {self.note} ---\n"

    def begin(self) -> JobChange:
        """The store change of the move to `launching`: the interrupted attempt closed, the
        next one opened, the old instance's handle forgotten (a marker kept, so a failed
        relaunch still asks the backend to stop whatever the job has)."""

        def change(job: Job) -> None:
            job.end_attempt(JobState.INTERRUPTED.value, now())
            job.open_attempt(self.spot)
            job.handle = {"attempt": self.number}
            job.error = None
            job.exit_code = None

        return change


def plan_relaunch(job: Job, outcome: Outcome) -> Relaunch | None:
    """The next attempt of a job whose attempt ended with `outcome`, or None: not an
    interruption, not a spot job, `on_interruption: "fail"`, no attempt left, or a Stop."""
    if outcome.state is not JobState.INTERRUPTED or job.stop_requested:
        return None
    spot = job.next_attempt_spot()
    if spot is None:
        return None
    return Relaunch(number=len(job.attempts) + 1, of=job.max_attempts, spot=spot)


def final_interruption(job: Job, outcome: Outcome) -> Outcome:
    """The outcome recorded when an interrupted job gets no new attempt: why, in its error."""
    why = ""
    if job.spot and job.on_interruption == "fail":
        why = 'on_interruption is "fail"'
    elif job.spot and len(job.attempts) >= job.max_attempts:
        why = f"attempt {len(job.attempts)} of {job.max_attempts}: no attempt left"
    error = f"{outcome.error} ({why})" if outcome.error and why else outcome.error or why
    return Outcome(outcome.state, exit_code=outcome.exit_code, error=error or None)


def refused_relaunch(outcome: Outcome, refusal: str) -> Outcome:
    """The outcome recorded when a relaunch is refused (the spending cap): both reasons."""
    return Outcome(outcome.state, error=f"{outcome.error}; not relaunched: {refusal}")


def relaunch_failed(job: Job, launch_error: str) -> str:
    """The error of an interrupted job whose next attempt could not launch (no capacity in
    any pool, AWS refusing, ...): the run was interrupted and could not be resumed."""
    attempt = f"attempt {job.attempt_number} of {job.max_attempts}"
    return f"spot interrupted; {attempt} could not launch: {launch_error}"


def close_unlaunched_attempt(job: Job) -> None:
    """The attempt that never got an instance ends `failed`; the job reads `interrupted`."""
    job.end_attempt(JobState.FAILED.value, now())


def _append(path: Path, text: str) -> None:
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


async def mark_log(root_dir: str, job: Job, text: str) -> None:
    """Append `text` to the job's log (on the shared file system for EC2). Best effort: a log
    that cannot be written (its folder gone, a link put in its place) never stops a job."""
    path = Path(root_dir) / job.log_path
    with contextlib.suppress(OSError):
        await asyncio.to_thread(_append, path, text)
