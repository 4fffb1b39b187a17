"""Where local jobs stand against the server for the CPU.

Jobs run at a lower priority (a higher niceness) than the server, so the server answers while
many jobs start or run. On Linux, niceness only orders processes of one *autogroup*, and a new
session (`setsid`) is a new autogroup that competes with the server's as an equal, whatever
its niceness: 200 jobs in sessions of their own would take 200 shares of the CPU to the
server's one (`man 7 sched`, "The autogroup feature"). Jobs therefore get a process group of
their own (Stop signals the group; a terminal's Ctrl-C reaches the server's group only) but
stay in the server's session, where their niceness counts. The autogroup's own niceness cannot
stand in: unprivileged, it may be set once per 100 ms on the whole machine.

Within the session, niceness alone is not enough when hundreds of jobs start at once: 200
processes at niceness 19 (weight 15 each) outweigh the server's thread (1024), and the
scheduler then makes the server wait tens of milliseconds for a CPU. Jobs therefore also take
Linux's SCHED_IDLE policy (`c.LocalBackend.idle_policy`): they yield the CPU to the server at
once, and still get whole cores while it is idle.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .wrapper import IDLE


def own_process_group() -> dict[str, Any]:
    """`subprocess.Popen` arguments for a child that leads a new process group, in our session.
    Python 3.10 has no `process_group`: a new session there (the autogroup caveat applies)."""
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"start_new_session": True}


def job_niceness(increment: int) -> int:
    """The absolute niceness of jobs: the server's own plus `increment` (at most 19)."""
    return min(19, os.getpriority(os.PRIO_PROCESS, 0) + max(0, increment))


def job_priority(increment: int, idle_policy: bool) -> str:
    """A job's priority as `wrapper.lower_priority` takes it."""
    niceness = str(job_niceness(increment))
    return f"{niceness},{IDLE}" if idle_policy else niceness
