"""Front-end figures with Playwright (playwright-core) driving Debian's chromium."""

from __future__ import annotations

from pathlib import Path

from ..report import Report
from ..util import Processes

SECTION = "front end (ours)"


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    why = "the front-end benchmark is not written yet"
    report.missing(
        SECTION, "panel update from a poll, 1,000 jobs: main-thread time", "< 50 ms", why
    )
    report.missing(SECTION, "log view following a 200 MB log: DOM nodes", "< 2,000", why)
    report.missing(SECTION, "log view following a 200 MB log: JS heap", "< 150 MB", why)
