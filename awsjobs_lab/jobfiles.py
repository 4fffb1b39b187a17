"""A job's state folder on the (shared) file system, its exit-code file, and what an exit
code means. Both backends use this one module.

`<root>/.awsjobs/jobs/<id>/` holds small files the job's wrapper writes; on EC2 it lies on the
shared file system, so the server learns a job's exit code without an AWS call per job. The
wrapper writes `exit_code` atomically (write a temp file, rename) when the script ends.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .models import JobState, Outcome
from .safeopen import read_small_text

log = logging.getLogger(__name__)

STATE_DIR = Path(".awsjobs") / "jobs"
EXIT_CODE_FILE = "exit_code"


def job_state_dir(root_dir: str | Path, job_id: str) -> Path:
    """`<root>/.awsjobs/jobs/<id>/`."""
    return Path(root_dir) / STATE_DIR / job_id


def exit_code_path(root_dir: str | Path, job_id: str) -> Path:
    """`<root>/.awsjobs/jobs/<id>/exit_code`."""
    return job_state_dir(root_dir, job_id) / EXIT_CODE_FILE


# Written by an EC2 job's command when its script starts (the `running` phase, `phases.py`);
# removed before each attempt's launch, like the exit code.
STARTED_FILE = "started"


@dataclass(frozen=True)
class Progress:
    """What a job's state folder says at one look: its script has started; its exit code."""

    started: bool = False
    exit_code: int | None = None


def read_progress(state_dir: Path) -> Progress:
    """One look at a job's state folder, fresh on NFS: the folder is listed (opening a
    directory makes an NFS client revalidate it, so a file just created elsewhere is listed
    even where a lookup of its name would still answer from a cached "no such file"), then the
    exit code is opened and read (close-to-open: its content is fetched, not a cached stat).
    Blocking: in a thread."""
    try:
        names = set(os.listdir(state_dir))
    except (FileNotFoundError, NotADirectoryError):
        return Progress()
    except OSError as exc:
        log.warning("awsjobs: cannot list %s: %s", state_dir, exc)
        return Progress()
    code = read_exit_code(state_dir / EXIT_CODE_FILE) if EXIT_CODE_FILE in names else None
    return Progress(started=STARTED_FILE in names or code is not None, exit_code=code)


def read_exit_code(path: Path) -> int | None:
    """The integer in an exit-code file, or None while it isn't there (or isn't whole)."""
    try:  # opened without blocking: a FIFO put in its place must not hang a thread
        text = read_small_text(path).strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("awsjobs: cannot read %s: %s", path, exc)
        return None
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def outcome_from_exit_code(code: int) -> Outcome:
    """How a job ended, from the exit code its wrapper recorded (negative: killed by that
    signal, as Python's subprocess reports it)."""
    if code == 0:
        return Outcome(JobState.SUCCEEDED, exit_code=0)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return Outcome(JobState.FAILED, exit_code=code, error=f"killed by {name}")
    return Outcome(JobState.FAILED, exit_code=code, error=f"exited with code {code}")
