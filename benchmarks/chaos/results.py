"""The chaos run's section of benchmarks/RESULTS.md, between two markers: written by
`python -m benchmarks.chaos --write`, kept when `python -m benchmarks` rewrites the file.
Light on purpose: `python -m benchmarks` imports it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

BEGIN = "<!-- chaos:begin (written by python -m benchmarks.chaos --write) -->"
END = "<!-- chaos:end -->"


def write_section(path: Path, body: str) -> None:
    """Put the chaos section into RESULTS.md, replacing the previous one (or at the end)."""
    current = path.read_text() if path.exists() else ""
    path.write_text(_replaced(current, body))


def _replaced(current: str, body: str) -> str:
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + body + tail
    return current.rstrip("\n") + "\n\n" + body + "\n"


@contextlib.contextmanager
def kept_section(path: Path) -> Iterator[None]:
    """Keep the chaos section of `path` across a rewrite of the file (by `python -m
    benchmarks`, which writes its own figures and knows nothing of this one)."""
    current = path.read_text() if path.exists() else ""
    kept = ""
    if BEGIN in current and END in current:
        kept = BEGIN + current.partition(BEGIN)[2].partition(END)[0] + END
    yield
    if kept:
        write_section(path, kept)
