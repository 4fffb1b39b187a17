"""Schedules in the Python API (re-exported by `awsjobs_lab.client`)::

    from awsjobs_lab.client import create_schedule, list_schedules, pause_schedule

    create_schedule("nightly", "0 2 * * *", "report.ipynb", timezone="Europe/Paris", memory=8)
    pause_schedule("nightly")

A schedule is returned as the REST API's JSON (a dict: `name`, `cron`, `description`,
`next_runs`, `runs`...). Like the rest of the API it is a client of the running server's REST API.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client, Job

When = datetime | str | None


def _connect(path: str | os.PathLike[str] | None = None) -> Client:
    from .client import connect  # at call time: client.py imports this module

    return connect(path)


def _path(name: str) -> str:
    from .client import _quote

    return f"schedules/{_quote(name)}"


def _iso(value: When) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _answer(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, Mapping) else {}


def create_schedule(
    name: str,
    cron: str,
    script: str | os.PathLike[str],
    *,
    timezone: str | None = None,
    start_at: When = None,
    end_at: When = None,
    enabled: bool = True,
    **job: Any,
) -> dict[str, Any]:
    """Run `script` on `cron` (five fields, e.g. "0 6 * * 1-5": 06:00 Monday to Friday) in
    `timezone` (IANA; default the server's), from `start_at` to `end_at` (datetimes, or ISO
    8601 text). `job` takes `run_job`'s keyword arguments (memory, cpu, spot, backend, ...).
    An EC2 schedule lives in AWS and runs with the server stopped; a local one fires while
    the server runs."""
    client = _connect(script)
    body: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "enabled": enabled,
        "job": client.job_body(script, **job),
    }
    if timezone is not None:
        body["timezone"] = timezone
    body.update({k: _iso(v) for k, v in (("start_at", start_at), ("end_at", end_at)) if v})
    return _answer(client.request("POST", "schedules", body=body))


def list_schedules() -> list[dict[str, Any]]:
    """This owner's schedules (with `next_runs` and `last_run`), by name."""
    return list(_answer(_connect().request("GET", "schedules")).get("schedules", []))


def get_schedule(name: str) -> dict[str, Any]:
    """One schedule, with its next runs (UTC and local) and its last `runs`."""
    return _answer(_connect().request("GET", _path(name)))


def update_schedule(name: str, **fields: Any) -> dict[str, Any]:
    """Change `cron`, `timezone`, `start_at`, `end_at`, `enabled`, or `job` (a mapping of
    `run_job`'s arguments, `script` included: the whole job is replaced)."""
    client = _connect()
    body = {k: _iso(v) if k in ("start_at", "end_at") else v for k, v in fields.items()}
    if isinstance(fields.get("job"), Mapping):
        job = dict(fields["job"])
        body["job"] = client.job_body(job.pop("script"), **job)
    return _answer(client.request("PATCH", _path(name), body=body))


def pause_schedule(name: str) -> dict[str, Any]:
    return update_schedule(name, enabled=False)


def resume_schedule(name: str) -> dict[str, Any]:
    """Enable it again; runs due while it was paused are not run."""
    return update_schedule(name, enabled=True)


def delete_schedule(name: str) -> None:
    """Delete it (an EC2 one in AWS too); jobs it started go on."""
    _connect().request("DELETE", _path(name))


def run_schedule(name: str) -> Job:
    """Start one run now; returns the job."""
    from .client import Job

    client = _connect()
    return Job(client, client.request("POST", f"{_path(name)}/run"))
