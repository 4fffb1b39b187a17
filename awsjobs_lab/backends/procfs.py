"""Reading Linux's /proc, in one place: a process's state, group, parent and start time.

The start time (clock ticks since boot) tells our process from a later one that reuses its pid.
Everything here is a plain file read: cheap, but call it off the event loop in bulk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    state: str  # one letter: R, S, D, Z (zombie), X (dead), ...
    ppid: int
    pgid: int
    start_ticks: int

    @property
    def is_dead(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(raw: bytes) -> ProcStat:
    """Parse the text of `/proc/<pid>/stat`."""
    # The command name (field 2) may hold spaces and ')': the fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))


def proc_stat(pid: int) -> ProcStat | None:
    """What /proc says of `pid`, or None if it is gone (or not ours to read)."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    try:
        return parse_stat(raw)
    except (IndexError, ValueError):
        return None


def has_procfs() -> bool:
    return (PROC / "self" / "stat").exists()


def all_pids() -> list[int]:
    """Every pid /proc lists now (empty without /proc)."""
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []


def live_processes() -> dict[int, ProcStat]:
    """pid → stat of every process that is not a zombie."""
    found = {}
    for pid in all_pids():
        stat = proc_stat(pid)
        if stat is not None and not stat.is_dead:
            found[pid] = stat
    return found


def pids_with_environ(entry: str) -> list[int]:
    """Live processes whose environment, as it was when they exec'd, holds `entry`
    (`"NAME=value"`). Processes of other users are not readable and are left out."""
    wanted = entry.encode()
    found = []
    for pid, stat in live_processes().items():
        try:
            environ = (PROC / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and not stat.is_dead:
            found.append(pid)
    return found
