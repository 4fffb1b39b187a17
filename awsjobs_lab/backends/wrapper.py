"""What runs in a local job's own process, before and after the job's code: the wrapper program,
and the claim of the job's state folder that the warm runner's child makes too.

The server learns a job's pid only after the process has started, so a server killed in
between (SIGKILL, out of memory, power) would leave a running job without a pid. The process
therefore says where it is, in the job's state folder, before the job's code runs:

- `lock`: an exclusive `flock` that the job's process holds for its whole life (the kernel
  drops it when the process dies). Held: a process of the job is alive.
- `pid`: `"<pid> <pgid>\\n"`, written atomically under the lock, before the job starts.
- `abandoned`: written by the server, under the lock, when it gives up a job as never started;
  a process that gets the lock later sees it and runs nothing. With the lock this closes the
  window: a job's process is either found or certain never to run (`process_finder.py`).
- `exit_code`: written atomically when the job ends (negative: killed by that signal).

Run as a program, `python -I -S wrapper.py <exit_code file> <priority> argv...` lowers its CPU
priority (`lower_priority`), claims the folder of `<exit_code file>`, runs argv, waits for it and
writes its exit code. Standard library only (it runs isolated, without site-packages), and
nothing in it is built from user input.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys

LOCK_FILE = "lock"
PID_FILE = "pid"
ABANDONED_FILE = "abandoned"


IDLE = "idle"  # in a priority: the SCHED_IDLE policy too


def lower_priority(pid: int, priority: str) -> None:
    """Lower the CPU priority of process `pid` (0: this one) to `priority`: "<niceness>", or
    "<niceness>,idle" for Linux's SCHED_IDLE policy as well (it runs only when no task of
    normal policy in its autogroup wants the CPU, and yields the CPU to one at once). Never
    raises a priority; best effort: a process that cannot be changed runs as it is."""
    nice_text, _, policy = priority.partition(",")
    with contextlib.suppress(OSError, ValueError):
        if int(nice_text) > os.getpriority(os.PRIO_PROCESS, pid):
            os.setpriority(os.PRIO_PROCESS, pid, int(nice_text))
    if policy == IDLE and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def write_atomically(path: str, text: str) -> None:
    """Write a temp file, then rename it over `path`: a reader sees all of it or nothing."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def open_lock(state_dir: str) -> int:
    """The descriptor of the folder's lock file (created if needed; never a symlink)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    return os.open(os.path.join(state_dir, LOCK_FILE), flags, 0o600)


def claim(state_dir: str) -> int | None:
    """In the job's process, before the job runs: take the folder's lock for the rest of this
    process's life and write the pid file. Returns the lock's descriptor (keep it open; it is
    not inherited by the job's own children), or None if the server gave the job up: then run
    nothing."""
    lock = open_lock(state_dir)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the server holds it only for a moment
    if os.path.lexists(os.path.join(state_dir, ABANDONED_FILE)):
        os.close(lock)
        return None
    write_atomically(os.path.join(state_dir, PID_FILE), f"{os.getpid()} {os.getpgid(0)}\n")
    return lock


def main(args: list[str]) -> int:
    path, priority, argv = args[0], args[1], args[2:]
    lower_priority(0, priority)  # first thing, before the job exists: it inherits the priority
    if claim(os.path.dirname(path)) is None:
        return 0  # given up by the server: never run, nothing written
    try:
        code = subprocess.call(argv)
    except OSError as err:
        print(f"awsjobs: cannot run {argv[0]!r}: {err.strerror}", file=sys.stderr, flush=True)
        code = 127
    write_atomically(path, f"{code}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
