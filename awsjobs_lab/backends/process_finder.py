"""Finding a local job's process from what it left in its state folder (see `wrapper.py`), for
a job whose pid was never recorded: the server died between starting the process and saving
its pid, or a Stop came in that window.

`find` either finds the live process, or makes sure that none will ever run. A process that
holds the folder's lock is alive; one that was started (its environment, readable in
/proc/<pid>/environ from its exec on, holds `AWSJOBS_JOB_ID=<id>`) but has not claimed the
folder yet is alive too. When neither exists and no pid file was written, the folder is marked
abandoned *under the lock*, so a process forked but not yet exec'd runs nothing.
Blocking (file locks and reads): call it in a thread.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..safeopen import read_small_text
from .procfs import pids_with_environ, proc_stat
from .wrapper import ABANDONED_FILE, PID_FILE, open_lock, write_atomically

# How long a process that holds the lock may take to write its pid file (it does so at once).
PID_FILE_WAIT_SECONDS = 5.0
# Set in every local job's environment (the job's own code may read it too).
JOB_ID_VARIABLE = "AWSJOBS_JOB_ID"


@dataclass(frozen=True)
class FoundProcess:
    alive: bool  # a process of the job holds the folder's lock now
    pid: int | None = None  # from its pid file, if it wrote one
    pgid: int | None = None

    def handle(self) -> dict[str, int | None]:
        """The local backend's handle for this process (its start time read now: the lock
        proves the pid is still the job's)."""
        assert self.pid is not None
        stat = proc_stat(self.pid)
        return {
            "pid": self.pid,
            "pgid": self.pgid,
            "start_time": stat.start_ticks if stat else None,
        }


def read_pid_file(state_dir: Path) -> tuple[int, int] | None:
    """(pid, pgid) from the folder's pid file, or None if there is none (or not a whole one)."""
    try:
        fields = read_small_text(state_dir / PID_FILE).split()
        pid, pgid = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, pgid) if pid > 0 and pgid > 0 else None


def _wait_for_pid_file(state_dir: Path) -> tuple[int, int] | None:
    deadline = time.monotonic() + PID_FILE_WAIT_SECONDS
    while True:
        found = read_pid_file(state_dir)
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.02)  # in a worker thread (see above), never on the event loop


def find(state_dir: Path) -> FoundProcess:
    """The job's live process, or `alive=False` with the certainty that none will ever run
    (the pid of one that ran and died, if it wrote its pid file)."""
    if not state_dir.is_dir():
        return FoundProcess(alive=False)  # made before any process is started: none was
    lock = open_lock(str(state_dir))
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a process of the job is alive
            ids = _wait_for_pid_file(state_dir)
            return FoundProcess(True, *ids) if ids else FoundProcess(alive=True)
        ids = read_pid_file(state_dir)
        if ids is not None:
            return FoundProcess(False, *ids)  # it ran, and has ended
        if pids_with_environ(f"{JOB_ID_VARIABLE}={state_dir.name}"):
            # Started (exec'd: its environment names the job) but not claimed yet; it is
            # waiting for this lock. Alive, pid unknown: the caller asks again shortly.
            return FoundProcess(alive=True)
        # None lives and none claimed: one forked but not yet exec'd will see this and run
        # nothing when it gets the lock.
        write_atomically(str(state_dir / ABANDONED_FILE), "")
        return FoundProcess(alive=False)
    finally:
        os.close(lock)  # releases the lock, if we took it


def forget(state_dir: Path) -> None:
    """Before a (first) launch: remove what an earlier process or server left in the folder."""
    for name in (PID_FILE, ABANDONED_FILE):
        (state_dir / name).unlink(missing_ok=True)
