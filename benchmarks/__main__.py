"""`python -m benchmarks`: every benchmark, one table, `benchmarks/RESULTS.md`.

    python -m benchmarks                 # everything (< 15 minutes on 2 cores)
    python -m benchmarks --quick         # fewer repetitions, for trying the harness out
    python -m benchmarks --only compare,scale
    python -m benchmarks --only capacity   # one section: RESULTS.md keeps the others' rows

Sections: compare (vs jupyter-scheduler), scale (list/get at 10,000 jobs, log tail, idle cost),
loop (the event loop while 200 local jobs are created and 50 logs followed: tick lag, largest
stall, asyncio's slow callbacks of ours), aws (monitor calls per cycle, launch overhead; moto
on 127.0.0.1), capacity (the AWS calls a capacity failure costs; the simulated AWS), frontend
(Playwright + Debian chromium), staging (a 1 GiB folder through S3, cold and after one edit),
phases (our share of a user's wait beside AWS's: registration → command, end → final, overhead
of a 30 s job, the first local notebook job; the simulated AWS with realistic delays, scaled).
A run of some sections only rewrites their rows of RESULTS.md and keeps the others (with the
date and commit of the run that measured them). Every server and job process started here is
ended on exit, also on failure or Ctrl-C. The chaos run is its own command: `python -m
benchmarks.chaos` (its section of RESULTS.md is kept when this rewrites the file).
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from . import compare
from .chaos.results import kept_section
from .report import RESULTS, Report, load_text, machine_facts, table_text, write_markdown
from .servers import PEER_VENV, ensure_peer_venv, log, package_version, start_server
from .util import REPO, WORK, Processes, git_describe

SECTIONS = ("compare", "scale", "loop", "aws", "capacity", "frontend", "staging", "phases")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (not for RESULTS.md)"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table but leave RESULTS.md alone"
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    os.chdir(REPO)
    run_id = secrets.token_hex(6)
    procs = Processes(run_id)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    cleanup = _cleanup(procs, tmp)
    atexit.register(cleanup)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        cleanup()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    report = Report()
    report.facts.update(machine_facts())
    report.facts["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report.facts["commit"] = git_describe()
    report.facts["load average at start (1/5/15 min)"] = load_text()
    report.facts["mode"] = "quick (fewer repetitions)" if args.quick else "full"
    ours_python = Path(sys.executable)
    versions = ", ".join(
        f"{dist} {package_version(ours_python, dist)}"
        for dist in ("jupyter_server", "jupyterlab", "aiobotocore", "moto")
    )
    report.facts["ours"] = f"awsjobs-lab from this checkout; {versions}"
    started = time.monotonic()
    status = 0
    try:
        for section in wanted:
            log(f"== {section}")
            try:
                SECTION_RUNNERS[section](report, procs, tmp, args.quick)
            except Exception as exc:  # a broken section must not hide the others' figures
                status = 1
                traceback.print_exc()
                report.notes.append(
                    f"section `{section}` stopped early: {type(exc).__name__}: {exc}"
                )
    finally:
        cleanup()
    report.facts["load average at end (1/5/15 min)"] = load_text()
    report.facts["duration"] = f"{(time.monotonic() - started) / 60:.1f} min"
    print()
    print(table_text(report.rows))
    for note in report.notes:
        print(f"- {note}")
    if not args.no_write:
        with kept_section(RESULTS):
            write_markdown(report, keep_other_sections=set(wanted) != set(SECTIONS))
        log(f"wrote {Path('benchmarks/RESULTS.md')}")
    return status


def _cleanup(procs: Processes, tmp: Path) -> Callable[[], None]:
    done = False

    def cleanup() -> None:
        nonlocal done
        if done:
            return
        done = True
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    return cleanup


def run_compare(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from .ours import start_ours

    peer_python = ensure_peer_venv()
    report.facts["peer"] = (
        f"jupyter_scheduler {package_version(peer_python, 'jupyter_scheduler')}, "
        f"jupyterlab {package_version(peer_python, 'jupyterlab')}, "
        f"jupyter_server {package_version(peer_python, 'jupyter_server')} "
        f"(venv {PEER_VENV.relative_to(REPO)})"
    )
    peer = start_server(procs, "peer", peer_python, tmp / "peer", {})
    log(f"peer server on 127.0.0.1:{peer.port}")
    ours = None
    try:
        ours = start_ours(procs, tmp / "ours-compare")
        log(f"our server on 127.0.0.1:{ours.port}")
    except Exception as exc:
        report.notes.append(f"our server could not start, peer measured alone: {exc}")
        log(f"our server could not start: {exc}")
    try:
        if quick:
            compare.run(report, ours, peer, reps=1, creates=5, lists=20)
        else:
            compare.run(report, ours, peer, reps=3, creates=50, lists=100)
    finally:
        for server in (ours, peer):
            if server is not None:
                procs.stop(server.proc)


def run_scale(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import scale

    scale.run(report, procs, tmp, quick)


def run_loop(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import loop

    loop.run(report, procs, tmp, quick)


def run_aws(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import aws

    aws.run(report, procs, tmp, quick)


def run_capacity(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import capacity

    capacity.run(report, tmp)  # its own simulated AWS in this process


def run_frontend(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from .frontend import driver

    driver.run(report, procs, tmp, quick)


def run_phases(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import phases

    phases.run(report, procs, tmp, quick)  # its own simulated AWS in this process


def run_staging(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    from . import staging

    staging.run(report, procs, tmp, quick)


SECTION_RUNNERS: dict[str, Callable[[Report, Processes, Path, bool], None]] = {
    "compare": run_compare,
    "scale": run_scale,
    "loop": run_loop,
    "aws": run_aws,
    "capacity": run_capacity,
    "frontend": run_frontend,
    "staging": run_staging,
    "phases": run_phases,
}

if __name__ == "__main__":
    sys.exit(main())
