"""Reading a job's log from an offset: seek, read at most `limit` bytes, cut on a UTF-8 boundary.

Only the requested bytes are read, so a 1 GiB log costs no more than a small one.

Rules (also the REST contract of `GET jobs/{id}/log`):
- `content` is the text of bytes `[offset, next_offset)`; bytes that are not valid UTF-8
  become U+FFFD.
- A multi-byte character cut by the byte cap, or still being written at the end of the file,
  is left for the next read (`next_offset` stops before it). Its bytes become U+FFFD instead
  when the log is final (the job has ended) and they end the file, or when the cap cut it and
  nothing else could be returned, so a reader always makes progress.
- A missing file reads as empty (`size` 0). Anything but a regular file (a FIFO, a folder, a
  symlink swapped in) raises `OSError` (`safeopen.NotRegularFile`): it is never opened in a
  way that could block.
- An offset past the end (the file was truncated or replaced) returns no content,
  `next_offset == offset` and `eof` true.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .safeopen import open_regular

DEFAULT_CHUNK_BYTES = 262144


@dataclass(frozen=True)
class LogChunk:
    content: str
    offset: int
    next_offset: int
    size: int
    eof: bool

    def to_dict(self) -> dict[str, Any]:
        # Not `dataclasses.asdict`: it deep-copies every field, on every poll of every log.
        return {
            "content": self.content,
            "offset": self.offset,
            "next_offset": self.next_offset,
            "size": self.size,
            "eof": self.eof,
        }


def _incomplete_tail(data: bytes) -> int:
    """How many bytes at the end of `data` start a UTF-8 sequence that is not complete yet."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the start of the last sequence
            if byte >= 0xF0:
                need = 4
            elif byte >= 0xE0:
                need = 3
            elif byte >= 0xC0:
                need = 2
            else:
                return 0  # ASCII
            return back if back < need else 0
    return 0  # only continuation bytes: invalid anyway, nothing to wait for


def read_chunk(path: Path, offset: int, limit: int, *, final: bool = False) -> LogChunk:
    """Blocking read; use `read_log` from the event loop."""
    if offset < 0 or limit <= 0:
        raise ValueError("offset must be >= 0 and limit > 0")
    try:  # never blocking (a FIFO), never through a final symlink: `NotRegularFile`, ELOOP
        fd = open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return LogChunk("", offset, offset, 0, True)
    with os.fdopen(fd, "rb") as f:
        size = f.seek(0, 2)
        if offset >= size:
            return LogChunk("", offset, offset, size, True)
        f.seek(offset)
        data = f.read(limit)
    at_end = offset + len(data) >= size
    cut = _incomplete_tail(data)
    if cut and not (final and at_end) and (at_end or cut < len(data)):
        # Wait for the rest of the character: it is being written (at the end) or is the next
        # read's (cut by the cap; unless it is all we have, then U+FFFD keeps the reader going).
        data = data[:-cut]
    next_offset = offset + len(data)
    return LogChunk(
        data.decode("utf-8", errors="replace"), offset, next_offset, size, next_offset >= size
    )


async def read_log(
    path: Path, offset: int = 0, limit: int = DEFAULT_CHUNK_BYTES, *, final: bool = False
) -> LogChunk:
    """`read_chunk` off the event loop."""
    return await asyncio.to_thread(read_chunk, path, offset, limit, final=final)
