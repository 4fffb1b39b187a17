"""`awsjobs schedule create|list|show|pause|resume|delete|run`: schedules from a terminal,
through the running Jupyter server (`schedule_client.py`). Hooked into `cli.build_parser`."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from . import cli
from . import schedule_client as schedules

SCHEDULE_HEADERS = ["NAME", "ENABLED", "NEXT RUN", "LAST RUN", "BACKEND", "PATH", "SCHEDULE"]
RUN_HEADERS = ["JOB", "STATE", "CREATED", "DUE", "ERROR"]


def _next_run(schedule: dict[str, Any]) -> str:
    runs = schedule.get("next_runs") or []
    return str(runs[0]["local"]) if runs else "-"


def _last_run(schedule: dict[str, Any]) -> str:
    last = schedule.get("last_run")
    return str(last["state"]) if isinstance(last, dict) else "-"


def _describe(schedule: dict[str, Any], out: TextIO) -> None:
    job = schedule.get("job") or {}
    where = "in AWS: runs with the server stopped" if schedule.get("remote") else "this server"
    fields = [
        ("name", schedule.get("name")),
        ("schedule", f"{schedule.get('description')} ({schedule.get('cron')})"),
        ("enabled", "yes" if schedule.get("enabled") else "no (paused)"),
        ("job", f"{job.get('path')} on {schedule.get('backend')}"),
        ("fires from", where),
        ("start_at", schedule.get("start_at")),
        ("end_at", schedule.get("end_at")),
        ("error", schedule.get("error")),
    ]
    for key, value in fields:
        if value is not None and value != "":
            out.write(f"{key + ':':15}{value}\n")
    for run in schedule.get("next_runs") or []:
        out.write(f"{'next run:':15}{run['local']}  ({run['utc']})\n")
    runs = schedule.get("runs")
    if runs:
        out.write("\n")
        rows = [
            [
                str(run.get("job_id") or "-"),
                str(run.get("state")),
                cli._when(run.get("created_at")),
                cli._when(run.get("scheduled_for")),
                str(run.get("error") or ""),
            ]
            for run in runs
        ]
        cli._table(rows, RUN_HEADERS, out)


def _show(schedule: dict[str, Any], args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        cli._print_json(schedule, out)
    else:
        _describe(schedule, out)
    return cli.EXIT_OK


def cmd_create(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    created = schedules.create_schedule(
        args.name,
        args.cron,
        args.script,
        timezone=args.timezone,
        start_at=args.start,
        end_at=args.end,
        enabled=not args.disabled,
        **cli.job_options(args),
    )
    return _show(created, args, out)


def cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    found = schedules.list_schedules()
    if args.json:
        cli._print_json(found, out)
    elif not found:
        err.write("No schedules.\n")
    else:
        rows = [
            [
                str(s["name"]),
                "yes" if s.get("enabled") else "no",
                _next_run(s),
                _last_run(s),
                str(s.get("backend")),
                str((s.get("job") or {}).get("path")),
                str(s.get("description")),
            ]
            for s in found
        ]
        cli._table(rows, SCHEDULE_HEADERS, out)
    return cli.EXIT_OK


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _show(schedules.get_schedule(args.name), args, out)


def cmd_pause(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _show(schedules.pause_schedule(args.name), args, out)


def cmd_resume(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _show(schedules.resume_schedule(args.name), args, out)


def cmd_delete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    schedules.delete_schedule(args.name)
    err.write(f"Deleted schedule {args.name} (jobs it started go on).\n")
    return cli.EXIT_OK


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = schedules.run_schedule(args.name)
    if args.json:
        cli._print_json(job.data, out)
    else:
        err.write(f"Started job {job.id} ({job.state}) of schedule {args.name}: {job.path}\n")
        out.write(job.id + "\n")
    return cli.EXIT_OK


EPILOG = """\
examples:
  awsjobs schedule create nightly report.ipynb --cron "0 2 * * *" --timezone Europe/Paris
  awsjobs schedule create weekdays train.py --cron "0 6 * * 1-5" --backend ec2 --memory 16
  awsjobs schedule list
  awsjobs schedule show nightly
  awsjobs schedule pause nightly
  awsjobs schedule run nightly

A local schedule fires while the Jupyter server runs; a run missed while it was down fires once
at start if younger than c.AWSJobs.missed_run_grace_minutes (60), else it is recorded missed.
An EC2 schedule lives in AWS (EventBridge Scheduler) and runs with the server stopped.
"""


def _add(
    verbs: Any, name: str, parent: argparse.ArgumentParser, helptext: str, func: Any
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = verbs.add_parser(name, parents=[parent], help=helptext)
    p.set_defaults(func=func)
    return p


def add_schedule_parser(
    sub: Any, common: argparse.ArgumentParser, formatter: type[argparse.HelpFormatter]
) -> None:
    p = sub.add_parser(
        "schedule",
        formatter_class=formatter,
        help="recurring jobs: create, list, show, pause, resume, delete, run",
        description="Run a notebook or script on a cron schedule (five fields, at most every "
        "5 minutes), through the running Jupyter server.",
        epilog=EPILOG,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = _add(verbs, "create", common, "create a schedule", cmd_create)
    create.add_argument("name", metavar="NAME", help="letters, digits, - and _ (at most 64)")
    create.add_argument("script", metavar="SCRIPT", help="the notebook or script to run")
    create.add_argument(
        "--cron", required=True, metavar="EXPR", help='five fields, e.g. "0 6 * * 1-5"'
    )
    create.add_argument("--timezone", metavar="ZONE", help="IANA zone (default: the server's)")
    create.add_argument("--start", metavar="ISO", help="first possible run (ISO 8601)")
    create.add_argument("--end", metavar="ISO", help="last possible run (ISO 8601)")
    create.add_argument("--disabled", action="store_true", help="create it paused")
    cli.add_job_options(create)
    _add(verbs, "list", common, "list the schedules", cmd_list)
    for verb, helptext, func in (
        ("show", "a schedule, its next runs and its last runs", cmd_show),
        ("pause", "stop firing it (until resume)", cmd_pause),
        ("resume", "fire it again (runs due while paused are not run)", cmd_resume),
        ("delete", "delete it (jobs it started go on)", cmd_delete),
        ("run", "start one run now; prints the job id", cmd_run),
    ):
        _add(verbs, verb, common, helptext, func).add_argument("name", metavar="NAME")
