"""Opening files that users control (logs, scripts, a job's small state files), safely.

A path checked earlier may since have been replaced by a symlink, a FIFO or a device. Every
open here therefore
- refuses a symlink as the last component (`O_NOFOLLOW`): callers resolve and check the rest
  of the path inside the server root first;
- never blocks: opening a FIFO waits for its other end, which would occupy a thread of the
  event loop's shared pool for ever, so files are opened with `O_NONBLOCK`, and anything but
  a regular file is refused (`NotRegularFile`) before a byte is read or written.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

_SAFE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path names a FIFO, a socket, a device or a folder, not a regular file."""


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """`os.open` of a regular file, never following a final symlink and never blocking.
    Returns a blocking descriptor (the caller closes it). Raises OSError (ELOOP for a
    symlink) or `NotRegularFile`."""
    fd = os.open(path, flags | _SAFE, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{os.fspath(path)} is not a regular file")
        # Back to blocking reads and writes: O_NONBLOCK was only for the open itself.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_text(path: Path | str, limit: int = 4096) -> str:
    """The first `limit` bytes of a small regular file, as UTF-8 text (errors replaced)."""
    fd = open_regular(path)
    try:
        return os.read(fd, limit).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def check_regular(path: Path | str) -> None:
    """Raise unless `path` is a regular file that is not a symlink (opened, not read)."""
    os.close(open_regular(path))
