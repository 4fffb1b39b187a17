"""`python -m benchmarks.chaos`: a chaos run of EC2 jobs on the simulated AWS; exits 1 if an
invariant broke.

    python -m benchmarks.chaos                    # 60 jobs, 12 server kills (~5 minutes)
    python -m benchmarks.chaos --short            # 12 jobs, 3 kills: what CI runs
    python -m benchmarks.chaos --seed 7 --json    # the figures as JSON on stdout
    python -m benchmarks.chaos --write            # also its section of benchmarks/RESULTS.md

Everything runs on 127.0.0.1 and ends with the run, also on failure or Ctrl-C: the server
and every process of the simulated workers are ended by pid.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from ..report import RESULTS, machine_facts
from ..servers import log
from ..util import REPO, RUN_MARKER, WORK, Processes, git_describe
from . import check, plan, results, table, timing
from .drive import SCRIPT_DIR, Driver
from .stage import Stage
from .tap import Tap

FULL = {"jobs": 60, "kills": 12}
SHORT = {"jobs": 12, "kills": 3}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    size = SHORT if args.short else FULL
    jobs = args.jobs if args.jobs is not None else size["jobs"]
    kills = args.kills if args.kills is not None else size["kills"]
    if jobs < 2 or kills < 0:
        _parser().error("--jobs must be at least 2 and --kills at least 0")
    os.chdir(REPO)
    out = sys.stdout
    # With --json, stdout carries the JSON only: the run's log lines go to stderr.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        outcome = run(plan.make_plan(args.seed, jobs, kills, args.short), keep=args.keep)
        if args.write:
            results.write_section(RESULTS, table.section(outcome))
            log(f"wrote the chaos section of {RESULTS.relative_to(REPO)}")
    if args.json:
        print(json.dumps(outcome.to_json(), indent=1, default=str), file=out)
    else:
        print(table.text(outcome), file=out)
    return 0 if outcome.verdict.violations == 0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, help=f"jobs (default {FULL['jobs']})")
    parser.add_argument("--kills", type=int, help=f"server SIGKILLs (default {FULL['kills']})")
    parser.add_argument("--seed", type=int, default=11, help="seed of the plan and the faults")
    parser.add_argument(
        "--short",
        action="store_true",
        help=f"CI size: {SHORT['jobs']} jobs, {SHORT['kills']} kills",
    )
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument(
        "--write", action="store_true", help="write the chaos section of benchmarks/RESULTS.md"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (server log, sandboxes)"
    )
    return parser


def run(the_plan: plan.Plan, keep: bool = False) -> table.Outcome:
    """One chaos run, from a fresh simulator and store to the verdict."""
    run_id = secrets.token_hex(6)
    os.environ[RUN_MARKER] = run_id  # the simulated workers' processes carry it too
    procs = Processes(run_id)
    WORK.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="chaos-", dir=WORK))
    stage = Stage(procs, base, the_plan.seed)
    cleanup = _cleanup(stage, procs, base, keep)
    atexit.register(cleanup)
    previous = {s: signal.signal(s, _on_signal(cleanup)) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    machine = machine_facts()
    facts = {
        "seed": str(the_plan.seed),
        "commit": git_describe(),
        "date": table.utc_now(),
        "plan": f"{the_plan.jobs} jobs ({plan.mix(the_plan)}), {the_plan.kills} server kills, "
        f"{len(the_plan.steps)} steps",
        "machine": f"{machine['cores']} cores, {machine['memory']}",
    }
    try:
        log(f"chaos run in {base.relative_to(REPO)}: {facts['plan']}, seed {the_plan.seed}")
        stage.start()
        tap = Tap(stage.aws, stage.crash)
        driver = Driver(stage, tap, the_plan)
        settle = max(s.lifetime_minutes for s in _specs(the_plan)) * timing.MINUTE + 60.0
        run_log = driver.run(settle_timeout=settle)
        jobs = driver.jobs() or []
        state = stage.aws.state()
        verdict = check.judge(
            jobs,
            state,
            run_log.sampler,
            stage.root / SCRIPT_DIR / "runs",
            table.touched(tap, run_log),
        )
        facts["duration"] = f"{(time.monotonic() - started) / 60:.1f} min"
        facts["server restart p50"] = _p50_text(run_log.restart_seconds)
        missed = sorted(set(plan.EXPECTED_KINDS) - set(check.fault_kinds(state["record"])))
        facts["fault kinds not injected"] = ", ".join(missed) or "none"
        if verdict.violations:
            keep = True
            facts["kept"] = str(base.relative_to(REPO))
        return table.Outcome(facts, verdict, run_log, tap, state)
    finally:
        cleanup(keep)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _specs(the_plan: plan.Plan) -> list[plan.JobSpec]:
    return [step.job for step in the_plan.steps if step.job is not None]


def _p50_text(values: list[float]) -> str:
    if not values:
        return "no restart"
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 2]:.1f} s ({len(values)} restarts)"


def _cleanup(stage: Stage, procs: Processes, base: Path, keep: bool) -> Callable[..., None]:
    """Ends the server, the simulator and every marked process, once; removes the run's
    folder unless it is kept (a run that broke an invariant keeps it for the server log)."""
    done = False

    def cleanup(keep_folder: bool = keep) -> None:
        nonlocal done
        if done:
            return
        done = True
        with contextlib.suppress(Exception):
            stage.stop()
        procs.stop_all()
        if not keep_folder:
            shutil.rmtree(base, ignore_errors=True)

    return cleanup


def _on_signal(cleanup: Callable[..., None]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        cleanup()
        raise SystemExit(128 + signum)

    return handler


if __name__ == "__main__":
    sys.exit(main())
