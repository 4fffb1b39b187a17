"""R on the simulated EC2 worker (its worker really runs the SSM command text with bash on this
machine, so R is the machine's, installed by scripts/setup.sh): an `.R` script receives its
`args` verbatim through the base64-encoded command, and a parameterized `.Rmd` renders to its
`output_path` on the shared file system."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ec2_helpers import Recorder, make_job

# The simulator's worker on, and the wait for a job's exit code (shared with the SSM tests).
from test_ssm_values import _exit_code
from test_ssm_values import worker as worker

from awsjobs_lab.requests import LaunchDefaults, parse_launch_request
from tests.awssim.server import SimulatedAWS

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


async def test_r_script_receives_its_args(worker: SimulatedAWS, make_backend, root: Path) -> None:
    backend = make_backend(worker_python=sys.executable)
    job = make_job(root, "show.R", body=SHOW_ARGS, args=list(ARGS))
    await backend.launch(job, Recorder(job))

    assert await _exit_code(backend, job, timeout=120.0) == "0\n"
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

    code = await _exit_code(backend, job, timeout=120.0)
    assert code == "0\n", (root / job.log_path).read_text()
    assert "The square of 9 is 81." in (root / job.output_path).read_text()
