"""R on the simulated EC2 worker (its worker really runs the SSM command text with bash on this
machine, so R is the machine's, installed by scripts/setup.sh): an `.R` script receives its
`args` verbatim through the base64-encoded command, and a parameterized `.Rmd` renders to its
`output_path` on the shared file system."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.models import Job
from awsjobs_lab.requests import LaunchDefaults, parse_launch_request
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually

WORKER_CLOCK = {
    "boot_seconds": 0.1,
    "agent_register_seconds": 0.1,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.1,
}
# What a shell or SSM would rewrite, if anything were written into the command text as it is.
ARGS = ["--epochs", "10", "with space", 'it\'s "q"', "$(touch pwned)", "{{ssm:x}}", "", "é"]
SHOW_ARGS = "cat(jsonlite::toJSON(commandArgs(trailingOnly = TRUE)), '\\n', sep = '')\n"
REPORT = """---
title: Squares
params:
  n: 3
---

The square of `r params$n` is `r params$n^2`.
"""


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    """The simulator's worker on: boot scripts and commands really run, `root` is the EFS."""
    sim.configure({"clock": WORKER_CLOCK, "worker": {"enabled": True, "efs_root": str(root)}})
    return sim


async def _exit_code(backend: EC2Backend, job: Job) -> str:
    path = backend.exit_code_path(job)

    async def written() -> str | None:
        return path.read_text() if path.is_file() else None

    found: str = await eventually(written, timeout=120.0)
    return found


async def test_r_script_receives_its_args(worker: SimulatedAWS, make_backend, root: Path) -> None:
    backend = make_backend(worker_python=sys.executable)
    job = make_job(root, "show.R", body=SHOW_ARGS, args=list(ARGS))
    await backend.launch(job, Recorder(job))

    assert await _exit_code(backend, job) == "0\n"
    log = (root / job.log_path).read_text()
    (line,) = [x for x in log.splitlines() if x.startswith('["')]  # not an [awsjobs] line
    assert json.loads(line) == ARGS
    assert not (root / "work" / "pwned").exists()


async def test_rmd_renders_its_parameters(worker: SimulatedAWS, make_backend, root: Path) -> None:
    backend = make_backend(worker_python=sys.executable)
    (root / "work" / "squares.Rmd").write_text(REPORT)
    job = parse_launch_request(
        {"path": "work/squares.Rmd", "parameters": {"n": 9}},
        root_dir=root,
        backends=["ec2"],
        defaults=LaunchDefaults(backend="ec2"),
    )
    assert job.output_path == f"work/squares.{job.id}.html"
    await backend.launch(job, Recorder(job))

    code = await _exit_code(backend, job)
    assert code == "0\n", (root / job.log_path).read_text()
    assert "The square of 9 is 81." in (root / job.output_path).read_text()
