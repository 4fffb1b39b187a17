"""AWS scale targets against moto on 127.0.0.1: calls per monitor cycle, launch overhead."""

from __future__ import annotations

from pathlib import Path

from .report import Report
from .util import Processes

SECTION = "aws (ours, moto)"


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    why = "the EC2 backend's monitor (awsjobs_lab/aws/monitor.py) is not in the checkout yet"
    for jobs in (1, 50, 500):
        report.missing(SECTION, f"AWS calls per monitor cycle, {jobs} running jobs", "≤ 4", why)
    report.missing(SECTION, "launch overhead p50, POST → RunInstances sent", "< 50 ms", why)
