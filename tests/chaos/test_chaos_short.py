"""The chaos run's short form (`python -m benchmarks.chaos --short`): a dozen EC2 jobs on the
simulated AWS with faults in every AWS call type, server SIGKILLs and restarts, Stops and
worker events; jobs in both storages (EFS, S3), a server kill during an S3 upload and workers
dying mid-upload. It fails the suite if any invariant breaks: a leaked instance, a job final while
its instance runs, a job run twice, a job without a reason or never ending.

It runs as its own process (the simulator patches moto's dispatcher, one per process) and
takes about a minute on 2 cores; see benchmarks/README.md, section "chaos".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 270  # seconds; the run itself bounds every wait well below this


@pytest.mark.timeout(RUN_TIMEOUT + 20)
def test_short_chaos_run_keeps_every_invariant() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--short", "--json", "--seed", "11"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.stdout.strip(), f"no report (exit {done.returncode}):\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout)
    stories = {job: report["jobs"][job] for job in report["broken_jobs"]}
    broken = json.dumps(stories, indent=1)[:8000]
    summary = json.dumps(report["table"], indent=1)
    assert report["leaks"] == [], f"leaked instances:\n{summary}\n{broken}"
    assert report["final_while_alive"] == [], f"final while running:\n{summary}\n{broken}"
    assert report["run_twice"] == {}, f"jobs run twice:\n{summary}\n{broken}"
    assert report["without_reason"] == [], f"jobs without a reason:\n{summary}\n{broken}"
    assert report["still_active"] == [], f"jobs that never ended:\n{summary}\n{broken}"
    assert len(report["jobs"]) >= 12
    assert len(report["kills"]) >= 3, f"fewer server kills than planned: {report['kills']}"
    assert done.returncode == 0, done.stderr[-4000:]
