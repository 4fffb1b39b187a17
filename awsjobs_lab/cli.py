"""The `awsjobs` command (also `jupyter awsjobs`): run, watch and stop jobs from a terminal.

It talks to the running Jupyter server's REST API (see `awsjobs_lab.client`), so jobs started
here show up in the Jobs panel. `build-image` and `sweep` are the exceptions: they talk to AWS
themselves, with the user's credentials (`sweep` with the server's `c.EC2Backend` settings).

Exit status: 0 success (for `run --wait/--follow`: the job succeeded); 1 the job ended without
succeeding (failed, stopped, timed_out, interrupted), the image build failed, or the sweep could
not list the instances or confirm a termination; 2 bad arguments; 3 no server found or the
server refused/failed the request; 130 interrupted by Ctrl-C (the job keeps running).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, TextIO

from . import client as api
from .models import ACTIVE_STATES, MAX_ATTEMPTS_LIMIT, ON_INTERRUPTION, Job
from .phases import phase_durations

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit status:
  0    success (run --wait/--follow: the job succeeded)
  1    the job ended without succeeding (failed, stopped, timed_out, interrupted),
       the image build failed, or the sweep could not list the instances or confirm
       a termination
  2    bad arguments
  3    no Jupyter server found, or the server refused or failed the request
  130  Ctrl-C: stopped waiting/following; the job keeps running
"""

MAIN_EPILOG = f"""\
examples:
  awsjobs run analysis.ipynb --memory 16 --cpu 4 --spot --log-file analysis.log --follow
  awsjobs list --state running,pending
  awsjobs logs 3f2a9c0d1e4b5a67 --follow
  awsjobs stop 3f2a9c0d1e4b5a67
  awsjobs instances
  awsjobs build-image --instance-profile awsjobs-worker
  awsjobs sweep --dry-run

The server is found from JUPYTER_SERVER_URL (+ JUPYTER_TOKEN) when set, else from the running
Jupyter servers of this user (the one whose root contains the script or the current directory).

{EXIT_CODES_HELP}"""


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


ACTIVE_VALUES = frozenset(s.value for s in ACTIVE_STATES)


def _print_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def _table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [headers, *rows]
    for line in lines:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n")


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _cost(value: Any) -> str:
    return f"${value:.4f}" if isinstance(value, (int, float)) else "-"


def _job_rows(jobs: Sequence[api.Job]) -> list[list[str]]:
    rows = []
    for job in jobs:
        d = job.data
        rows.append(
            [
                job.id,
                job.state,
                job.backend,
                job.path,
                _when(d.get("created_at")),
                _duration(d.get("elapsed_seconds")),
                job.instance_type or "-",
                _cost(d.get("cost_so_far")),
            ]
        )
    return rows


JOB_HEADERS = ["ID", "STATE", "BACKEND", "PATH", "CREATED", "ELAPSED", "INSTANCE", "COST"]


def _attempts_line(attempts: list[dict[str, Any]]) -> str | None:
    """The job's attempts, when it had more than one: "1 spot interrupted, 2 on-demand
    current"."""
    if len(attempts) < 2:
        return None
    return ", ".join(
        f"{i} {'spot' if a.get('spot') else 'on-demand'} {a.get('outcome') or 'current'}"
        for i, a in enumerate(attempts, start=1)
    )


def _gpus_line(d: dict[str, Any]) -> str | None:
    """'1 (A10G, 22 GiB each)', or None for a job that asked for no GPU."""
    if not d.get("gpus"):
        return None
    details = [str(d["gpu_model"])] if d.get("gpu_model") else []
    if d.get("gpu_memory_gib"):
        details.append(f"{d['gpu_memory_gib']:g} GiB each")
    return f"{d['gpus']} ({', '.join(details)})" if details else str(d["gpus"])


def _describe_job(job: api.Job, out: TextIO) -> None:
    d = job.data
    fields = [
        ("id", job.id),
        ("state", job.state),
        ("path", job.path),
        ("backend", job.backend),
        ("log", job.log_path),
        ("memory_gib", d.get("memory_gib")),
        ("cpus", d.get("cpus")),
        ("spot", d.get("spot")),
        ("args", " ".join(shlex.quote(a) for a in d.get("args") or []) or None),
        ("output", d.get("output_path")),
        ("gpus", _gpus_line(d)),
        ("on_interruption", d.get("on_interruption") if d.get("spot") else None),
        ("max_attempts", d.get("max_attempts") if d.get("spot") else None),
        ("attempts", _attempts_line(job.attempts)),
        ("instance_type", job.instance_type),
        ("instance_id", job.instance_id),
        ("hourly_price", d.get("hourly_price")),
        ("exit_code", job.exit_code),
        ("error", job.error),
        *_phase_fields(d),
    ]
    for key, value in fields:
        if value is not None and value != "":
            out.write(f"{key + ':':15}{value}\n")


def _phase_fields(d: dict[str, Any]) -> list[tuple[str, str | None]]:
    """`phase: booting · 0:41` while active; `phases:` each phase's duration once it ended."""
    if d.get("phase"):
        since = d.get("phase_since")
        return [("phase", f"{d['phase']} · {_duration(time.time() - since if since else None)}")]
    if d.get("state") in ACTIVE_VALUES:
        return []
    spent = phase_durations(Job.from_record(dict(d)).history)
    return [("phases", ", ".join(f"{p} {_duration(s)}" for p, s in spent.items()) or None)]


def _say_phase(job: api.Job, shown: str | None, err: TextIO) -> str | None:
    """Print the job's phase when it changed (`run --follow`); the phase now shown."""
    phase = job.data.get("phase")
    if phase and phase != shown:
        err.write(f"[awsjobs] {job.state}: {phase}\n")
        err.flush()
    return phase or shown


def _exit_for(state: str) -> int:
    return EXIT_OK if state == "succeeded" else EXIT_JOB_FAILED


def _still_running_hint(job_id: str, err: TextIO) -> None:
    err.write(
        f"\nStopped following; job {job_id} keeps running.\n"
        f"  watch it:  awsjobs logs {job_id} --follow\n"
        f"  stop it:   awsjobs stop {job_id}\n"
    )


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------


def _parse_pairs(items: Sequence[str] | None, what: str, parse_values: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"{what} must be KEY=VALUE, got {item!r}")
        parsed: Any = value
        if parse_values:
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
        result[key.strip()] = parsed
    return result


class _UsageError(Exception):
    pass


def _follow(job: api.Job, out: TextIO, err: TextIO, poll: float) -> None:
    """The log as it grows, and each phase change as it happens, until the job has ended."""
    shown: str | None = None
    while True:
        job.refresh()
        shown = _say_phase(job, shown, err)
        for chunk in job.log(follow=job.is_finished, poll=poll):  # to the end, once finished
            out.write(chunk)
            out.flush()
        if job.is_finished:
            return
        time.sleep(poll)


def job_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run_job`'s keyword arguments from the options of `add_job_options`."""
    parameters = _parse_pairs(args.param, "--param", parse_values=True)
    env = _parse_pairs(args.env, "--env", parse_values=False)
    return {
        "memory": args.memory,
        "cpu": args.cpu,
        "spot": args.spot,
        "log_file": args.log_file,
        "backend": args.backend,
        "max_lifetime_minutes": args.max_lifetime,
        "parameters": parameters or None,
        "env": env or None,
        "instance_type": args.instance_type,
        "on_interruption": args.on_interruption,
        "max_attempts": args.max_attempts,
        "gpus": args.gpus,
        "gpu_memory_gib": args.gpu_memory,
        "gpu_model": args.gpu_model,
    }


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = api.run_job(args.script, args=args.args or None, **job_options(args))
    if args.json and not (args.wait or args.follow):
        _print_json(job.data, out)
        return EXIT_OK
    if not args.json:
        err.write(f"Started job {job.id} ({job.state}) on {job.backend}: {job.path}\n")
        err.write(f"  log: {job.log_path}\n")
        if not (args.wait or args.follow):
            out.write(job.id + "\n")
            return EXIT_OK
    try:
        if args.follow:
            _follow(job, out if not args.json else err, err, args.poll)
        state = job.wait(poll=args.poll)
    except KeyboardInterrupt:
        _still_running_hint(job.id, err)
        return EXIT_INTERRUPTED
    if args.json:
        _print_json(job.data, out)
    else:
        detail = ""
        if job.exit_code is not None:
            detail += f", exit code {job.exit_code}"
        if job.error:
            detail += f": {job.error}"
        err.write(f"Job {job.id} {state}{detail}\n")
    return _exit_for(state)


def cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    jobs = api.list_jobs(state=args.state, limit=args.limit)
    if args.json:
        _print_json([job.data for job in jobs], out)
    elif not jobs:
        err.write("No jobs.\n")
    else:
        _table(_job_rows(jobs), JOB_HEADERS, out)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = api.get_job(args.job)
    if args.json:
        _print_json(job.data, out)
    else:
        _describe_job(job, out)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = api.get_job(args.job)
    try:
        for chunk in job.log(follow=args.follow, poll=args.poll, offset=0):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        _still_running_hint(job.id, err)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = api.stop_job(args.job)
    if args.wait:
        try:
            job.wait(poll=args.poll)
        except KeyboardInterrupt:
            err.write(f"\nStopped waiting; job {job.id} is {job.refresh().state}.\n")
            return EXIT_INTERRUPTED
    if args.json:
        _print_json(job.data, out)
    else:
        out.write(f"Job {job.id}: {job.state}\n")
    return EXIT_OK


INSTANCE_COLUMNS = [
    ("instance_id", "INSTANCE ID"),
    ("job_id", "JOB"),
    ("name", "NAME"),
    ("instance_type", "TYPE"),
    ("spot", "SPOT"),
    ("state", "STATE"),
    ("availability_zone", "ZONE"),
    ("launch_time", "LAUNCHED"),
    ("cost_so_far", "COST"),
]


def _instance_cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "cost_so_far":
        return _cost(value)
    if key == "launch_time":
        return _when(value)
    return str(value)


def cmd_instances(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    instances = api.list_job_instances()
    if args.json:
        _print_json(instances, out)
        return EXIT_OK
    if not instances:
        err.write("No running instances of awsjobs.\n")
        return EXIT_OK
    keys = [(k, h) for k, h in INSTANCE_COLUMNS if any(k in i for i in instances)]
    if not keys:  # an unknown shape: show every key
        names = sorted({k for i in instances for k in i})
        keys = [(k, k.upper()) for k in names]
    rows = [[_instance_cell(k, i.get(k)) for k, _ in keys] for i in instances]
    _table(rows, [h for _, h in keys], out)
    return EXIT_OK


def cmd_stop_instances(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    terminated = api.stop_instances(args.instance_ids)
    if args.json:
        _print_json({"terminated": terminated}, out)
    else:
        for iid in terminated:
            out.write(f"terminated {iid}\n")
    return EXIT_OK


def cmd_build_image(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from .aws import image

    extra = None
    if args.extra_script:
        try:
            with open(args.extra_script, encoding="utf-8") as f:
                extra = f.read()
        except OSError as e:
            raise _UsageError(f"--extra-script: {e}") from None
    options = image.BuildOptions(
        base_ami=args.base_ami,
        extra_script=extra,
        instance_type=args.instance_type,
        gpu=args.gpu,
        region=args.region,
        subnet_id=args.subnet_id,
        instance_profile=args.instance_profile,
        security_group_ids=tuple(args.security_group_id or ()),
        wait_timeout_seconds=args.wait_timeout,
        name=args.name,
        endpoint_url=args.endpoint_url,
    )

    def say(line: str) -> None:
        err.write(line + "\n")
        err.flush()

    try:
        result = asyncio.run(image.build_image(options, say=say))
    except KeyboardInterrupt:
        err.write("Interrupted; the builder instance was terminated.\n")
        return EXIT_INTERRUPTED
    except image.ImageBuildError as e:
        err.write(f"awsjobs build-image: {e}\n")
        return EXIT_JOB_FAILED
    if args.json:
        _print_json(result.to_dict(), out)
    else:
        out.write(f"{result.image_id}\n")
        err.write(
            f"\nWorker image {result.image_id} is ready"
            f" ({result.name}, region {result.region}).\n"
            "Use it in jupyter_server_config.py:\n\n"
            f'    c.EC2Backend.image_id = "{result.image_id}"\n\n'
            f"or: jupyter lab --EC2Backend.image_id={result.image_id}\n"
        )
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import asyncio

    from .aws.errors import AWS_ERRORS, error_message

    backend = _sweep_backend(args)
    try:
        report = asyncio.run(_run_sweep(backend, args.dry_run))
    except AWS_ERRORS as e:  # no credentials, no network, AWS refused the listing
        err.write(f"awsjobs sweep: AWS: {error_message(e)}\n")
        return EXIT_JOB_FAILED
    if args.json:
        _print_json(report.to_dict(), out)
    else:
        _print_sweep(report, backend.owner_tag, backend.region, out, err)
    return EXIT_OK if report.ok else EXIT_JOB_FAILED


def _server_config() -> Any:
    """`c.*` of this user's `jupyter_server_config` files (.json, .py) in Jupyter's config
    path, merged as the server merges them (the user's own folder wins)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import (
        ConfigFileNotFound,
        JSONFileConfigLoader,
        PyFileConfigLoader,
    )

    merged = Config()
    for folder in reversed(jupyter_config_path()):
        for loader in (JSONFileConfigLoader, PyFileConfigLoader):
            name = "jupyter_server_config" + (".json" if loader is JSONFileConfigLoader else ".py")
            try:
                merged.merge(loader(name, path=folder).load_config())
            except ConfigFileNotFound:
                continue
            except Exception as e:  # a broken config file: say which
                raise _UsageError(f"cannot read {os.path.join(folder, name)}: {e}") from None
    return merged


def _sweep_backend(args: argparse.Namespace) -> Any:
    """The EC2 backend's settings as the server has them, overridden by the flags."""
    from .backends.ec2 import EC2Backend

    backend = EC2Backend(config=_server_config())
    for name in ("region", "owner", "endpoint_url"):
        if getattr(args, name) is not None:
            setattr(backend, name, getattr(args, name))
    if args.grace_minutes is not None:
        backend.sweep_grace_seconds = args.grace_minutes * 60.0
    quiet = logging.getLogger("awsjobs_lab.cli.sweep")  # the command prints what it did
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    backend.log = quiet
    return backend


async def _run_sweep(backend: Any, dry_run: bool) -> Any:
    try:
        return await backend.inventory.sweep(dry_run=dry_run)
    finally:
        await backend.close()


def _print_sweep(report: Any, owner: str, region: str, out: TextIO, err: TextIO) -> None:
    verb = "would terminate" if report.dry_run else "terminated"
    for row in report.expired:
        if report.dry_run or row.instance_id in report.terminated:
            what = f"job {row.job_id}" if row.job_id else row.role
            out.write(f"{verb} {row.instance_id} ({what}, past its deadline {row.expires_at})\n")
    for iid, state in report.unconfirmed.items():
        err.write(f"NOT CONFIRMED: {iid} ({state}); terminate it by hand (EC2 console)\n")
    template_verb = "would delete" if report.dry_run else "deleted"
    for template_id in report.launch_templates:
        out.write(f"{template_verb} launch template {template_id} (left by a crash)\n")
    for template_id, problem in report.launch_template_errors.items():
        err.write(f"launch template {template_id or '(listing)'}: {problem}\n")
    if report.without_deadline:
        err.write(
            f"{len(report.without_deadline)} instance(s) without an awsjobs:expires-at tag "
            "(launched by an older version) left alone: "
            + ", ".join(report.without_deadline)
            + "\n"
        )
    if not report.expired:
        err.write(f"Nothing past its deadline (owner {owner or 'any'}, region {region}).\n")


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks, but wraps the long lines of a description."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if line.startswith(" ") or len(indent + line) <= width:
                lines.append(indent + line)  # examples and short lines: as written
            else:
                lines.append(
                    textwrap.fill(
                        line,
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
        return "\n".join(lines)


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "awsjobs"
    if name in ("jupyter-awsjobs",):
        return "jupyter awsjobs"
    return "awsjobs"


def add_job_options(p: argparse.ArgumentParser) -> None:
    """What a job asks for (`run`, and a schedule's job): `job_options` reads them back."""
    p.add_argument("--memory", type=float, metavar="GIB", help="memory in GiB (EC2 sizing)")
    p.add_argument("--cpu", type=int, metavar="N", help="vCPUs (EC2 sizing)")
    p.add_argument("--spot", action="store_true", help="use a spot instance (EC2)")
    p.add_argument("--log-file", metavar="PATH", help="log file (default: beside the script)")
    p.add_argument("--backend", metavar="NAME", help="backend: local or ec2 (server default)")
    p.add_argument(
        "--max-lifetime", type=int, metavar="MINUTES", help="maximum lifetime in minutes"
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="notebook or report parameter (papermill; an .Rmd/.qmd's declared params); "
        "VALUE is JSON if it parses, else a string",
    )
    p.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="environment variable for the job"
    )
    p.add_argument("--instance-type", metavar="TYPE", help="EC2 instance type (skips selection)")
    p.add_argument("--gpus", type=int, metavar="N", help="EC2: at least N GPUs (default 0)")
    p.add_argument(
        "--gpu-memory", type=float, metavar="GIB", help="EC2: at least GIB of memory per GPU"
    )
    p.add_argument("--gpu-model", metavar="NAME", help="EC2: GPU model, e.g. T4, A10G, L4")
    p.add_argument(
        "--on-interruption",
        choices=ON_INTERRUPTION,
        help="spot: when AWS reclaims the instance, retry (spot again, the last attempt "
        "on-demand; the default), on_demand (every later attempt) or fail",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help=f"spot: instances the job may use in all, 1 to {MAX_ATTEMPTS_LIMIT} (default 3)",
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or _prog(),
        description="Run notebooks and scripts as jobs (locally or on their own EC2 instance) "
        "through the running Jupyter server, and build the EC2 worker image.",
        epilog=MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    polling = argparse.ArgumentParser(add_help=False)
    polling.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS
    )

    p = sub.add_parser(
        "run",
        parents=[common, polling],
        formatter_class=_Formatter,
        help="run a notebook or script as a job",
        description="Run SCRIPT (.ipynb, .py, .R, .Rmd, .qmd, .sh; relative to the current "
        "directory, under the Jupyter server root) as a job. Prints the job id, or with "
        "--wait/--follow waits for the end and exits 0 only if the job succeeded. Ctrl-C stops "
        "waiting, never the job.",
        epilog="""\
examples:
  awsjobs run analysis.ipynb --memory 16 --cpu 4 --spot --log-file logs/analysis.log
  awsjobs run train.py --memory 4 --cpu 2 --follow
  awsjobs run report.Rmd --backend local --wait && echo done
  awsjobs run model.ipynb --param alpha=0.5 --param name='"run 1"' --env DATA=s3://bucket/x
  awsjobs run report.Rmd --param n=7 --wait
  awsjobs run train.py --memory 8 -- --epochs 10 --name "run 1"

"""
        + EXIT_CODES_HELP,
    )
    p.add_argument("script", metavar="SCRIPT", help="the notebook or script to run")
    p.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="after --: the script's own arguments (.py, .R, .sh), passed as given",
    )
    add_job_options(p)
    p.add_argument("--wait", action="store_true", help="wait for the job to end")
    p.add_argument(
        "--follow", "-f", action="store_true", help="print the log live until the job ends"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "list",
        parents=[common],
        formatter_class=_Formatter,
        help="list jobs, newest first",
        description="List jobs, newest first.",
        epilog="""\
examples:
  awsjobs list
  awsjobs list --state running,pending
  awsjobs list --json | jq -r '.[].id'
""",
    )
    p.add_argument(
        "--state",
        metavar="STATES",
        help="only these states, comma-separated (pending, launching, running, stopping, "
        "succeeded, failed, stopped, timed_out, interrupted)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N jobs")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "show",
        parents=[common],
        formatter_class=_Formatter,
        help="show one job",
        description="Show one job's details.",
        epilog="examples:\n  awsjobs show 3f2a9c0d1e4b5a67\n"
        "  awsjobs show 3f2a9c0d1e4b5a67 --json\n",
    )
    p.add_argument("job", metavar="JOB", help="job id")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "logs",
        parents=[polling],
        formatter_class=_Formatter,
        help="print a job's log",
        description="Print a job's log. With --follow keep printing until the job has ended; "
        "Ctrl-C stops following, never the job.",
        epilog="examples:\n  awsjobs logs 3f2a9c0d1e4b5a67\n  awsjobs logs 3f2a9c0d1e4b5a67 -f\n",
    )
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("--follow", "-f", action="store_true", help="follow until the job ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "stop",
        parents=[common, polling],
        formatter_class=_Formatter,
        help="stop a job",
        description="Stop a job (idempotent: a finished job is left as it is). On EC2 its "
        "instance is terminated.",
        epilog="examples:\n  awsjobs stop 3f2a9c0d1e4b5a67\n"
        "  awsjobs stop 3f2a9c0d1e4b5a67 --wait\n",
    )
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("--wait", action="store_true", help="wait until the job reads stopped")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser(
        "instances",
        parents=[common],
        formatter_class=_Formatter,
        help="list this tool's running EC2 instances",
        description="List the running EC2 instances launched by awsjobs (only those).",
        epilog="examples:\n  awsjobs instances\n  awsjobs instances --json\n",
    )
    p.set_defaults(func=cmd_instances)

    p = sub.add_parser(
        "stop-instances",
        parents=[common],
        formatter_class=_Formatter,
        help="terminate EC2 instances launched by this tool",
        description="Terminate EC2 instances launched by awsjobs. If any id is not one of this "
        "tool's instances, the server refuses them all and touches nothing.",
        epilog="examples:\n  awsjobs stop-instances i-0abc123def4567890\n"
        "  awsjobs instances --json | jq -r '.[].instance_id' | xargs awsjobs stop-instances\n",
    )
    p.add_argument("instance_ids", nargs="+", metavar="ID", help="instance ids")
    p.set_defaults(func=cmd_stop_instances)

    p = sub.add_parser(
        "build-image",
        parents=[common],
        formatter_class=_Formatter,
        help="build the EC2 worker image (AMI)",
        description="Build the worker AMI: launch a builder instance from the current Amazon "
        "Linux 2023 image, run the package's install script (Python + papermill + ipykernel, "
        "R + rmarkdown, Quarto, amazon-efs-utils, the SSM agent) through SSM, create the AMI, "
        "tag it awsjobs:image=true with the versions installed, and terminate the builder in "
        "every outcome (also on Ctrl-C and on failure). Talks to AWS with your credentials "
        "(AWS_PROFILE, AWS_REGION, ...). The builder needs an instance profile whose role "
        "has AmazonSSMManagedInstanceCore. The install script is "
        "awsjobs_lab/worker/install-worker.sh; add your own steps with --extra-script.",
        epilog="""\
examples:
  awsjobs build-image --instance-profile awsjobs-worker
  awsjobs build-image --instance-profile awsjobs-worker --extra-script my-packages.sh \\
      --instance-type m6i.large --region eu-west-1 --subnet-id subnet-0abc

prints the AMI id and the setting to use:  c.EC2Backend.image_id = "ami-..."
""",
    )
    p.add_argument("--base-ami", metavar="AMI", help="base image (default: latest AL2023)")
    p.add_argument(
        "--extra-script", metavar="FILE", help="a bash script run after the install script"
    )
    p.add_argument(
        "--instance-type",
        metavar="TYPE",
        help="builder type (default: t3.large; with --gpu g4dn.xlarge, or g5g.xlarge for arm64)",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="also the NVIDIA driver and CUDA (NVIDIA's Amazon Linux 2023 repository), "
        "built on a GPU instance",
    )
    p.add_argument("--region", metavar="REGION", help="AWS region (default: your AWS config)")
    p.add_argument("--subnet-id", metavar="SUBNET", help="subnet (default: the default VPC)")
    p.add_argument(
        "--security-group-id",
        action="append",
        metavar="SG",
        help="security group (repeatable; default: the VPC's default)",
    )
    p.add_argument(
        "--instance-profile",
        metavar="NAME_OR_ARN",
        help="IAM instance profile with AmazonSSMManagedInstanceCore",
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="limit for the install command (default 3600)",
    )
    p.add_argument("--name", metavar="NAME", help="AMI name (default: awsjobs-worker-<time>)")
    p.add_argument("--endpoint-url", metavar="URL", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_build_image)
    _add_sweep_parser(sub, common)
    from .staging.lifecycle import add_lifecycle_parser

    add_lifecycle_parser(sub, common, _Formatter)
    from .schedule_cli import add_schedule_parser  # it uses this module's helpers

    add_schedule_parser(sub, common, _Formatter)
    return parser


def _add_sweep_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sweep",
        parents=[common],
        formatter_class=_Formatter,
        help="terminate this owner's EC2 instances past their deadline (no server needed)",
        description="The safety net that needs no server: terminate this owner's EC2 "
        "instances launched by awsjobs (job workers and image builders) that are past their "
        "deadline (tag awsjobs:expires-at) plus a grace, and confirm. Talks to AWS with your "
        "credentials (AWS_PROFILE, AWS_REGION, ...) and the c.EC2Backend settings of your "
        "jupyter_server_config (region, owner, endpoint_url, sweep_grace_seconds); the flags "
        "override them. The Jupyter server runs the same sweep at start and every "
        "c.EC2Backend.sweep_interval_seconds. Exits 1 if a termination could not be "
        "confirmed.",
        epilog="""\
examples:
  awsjobs sweep --dry-run
  awsjobs sweep --region eu-west-1 --owner alice --grace-minutes 30

from cron, every 15 minutes (crontab -e):
  */15 * * * * AWS_PROFILE=awsjobs /path/to/venv/bin/awsjobs sweep >> ~/awsjobs-sweep.log 2>&1
""",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be terminated")
    p.add_argument("--region", metavar="REGION", help="AWS region (default: c.EC2Backend.region)")
    p.add_argument(
        "--owner",
        metavar="OWNER",
        help="the awsjobs:owner tag to sweep (default: c.EC2Backend.owner, your OS user; "
        "'' sweeps every owner's)",
    )
    p.add_argument(
        "--grace-minutes",
        type=float,
        metavar="MINUTES",
        help="how long past its deadline an instance is left (default: "
        "c.EC2Backend.sweep_grace_seconds, 10 minutes)",
    )
    p.add_argument(
        "--endpoint-url", metavar="URL", help="EC2 endpoint (default: c.EC2Backend.endpoint_url)"
    )
    p.set_defaults(func=cmd_sweep)


def _split_script_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`run SCRIPT [options] -- ARG...`: everything after the first `--` is the script's, taken
    apart before argparse (which would refuse a `--` that follows options)."""
    if argv[:1] != ["run"] or "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of `awsjobs`/`jupyter-awsjobs`. Returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    head, script_args = _split_script_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(head)
    if script_args:
        args.args = [*args.args, *script_args]
    prog = parser.prog
    try:
        code: int = args.func(args, out, err)
        return code
    except _UsageError as e:
        err.write(f"{prog}: error: {e}\n")
        return EXIT_USAGE
    except api.ServerNotFound as e:
        err.write(f"{prog}: {e}\n")
        return EXIT_SERVER
    except api.AWSJobsAPIError as e:
        err.write(f"{prog}: {e.message} (HTTP {e.status})\n")
        return EXIT_SERVER
    except ValueError as e:  # a path outside the server root, and the like
        err.write(f"{prog}: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("\nInterrupted.\n")
        return EXIT_INTERRUPTED


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
