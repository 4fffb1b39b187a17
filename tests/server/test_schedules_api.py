"""Schedules through the REST API of a real Jupyter server (auth required): validation, CRUD,
duplicates, next runs in UTC and local time, run now, delete leaving a running job running,
the preview, the jobs of one schedule (`GET jobs?schedule=`), the grace in `GET config`, and
authentication on every endpoint."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.models import JobState
from awsjobs_lab.service import JobService
from tests.server.helpers import assert_error, make_job
from tests.server.test_api import wait_state

API = ("awsjobs", "api")
WEEKDAYS_AT_6 = {"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}


@pytest.fixture
def scripts(jp_root_dir: Path) -> Path:
    (jp_root_dir / "ok.py").write_text("print('ok')\n")
    (jp_root_dir / "slow.py").write_text("import time\ntime.sleep(600)\n")
    return jp_root_dir


def body(name: str = "daily", **fields: Any) -> dict[str, Any]:
    return {"name": name, **WEEKDAYS_AT_6, "job": {"path": "ok.py"}, **fields}


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parts"),
    [
        ("GET", ("schedules",)),
        ("POST", ("schedules",)),
        ("GET", ("schedules", "daily")),
        ("PATCH", ("schedules", "daily")),
        ("DELETE", ("schedules", "daily")),
        ("POST", ("schedules", "daily", "run")),
        ("GET", ("schedule-preview",)),
    ],
)
async def test_every_schedule_endpoint_requires_auth(
    jp_fetch: Any, service: Any, method: str, parts: tuple[str, ...]
) -> None:
    response = await jp_fetch(
        *API,
        *parts,
        method=method,
        body=b"{}" if method in ("POST", "PATCH") else None,
        headers={"Authorization": ""},
        raise_error=False,
    )
    assert response.code in (401, 403)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"name": "has space"}, 400, ("name:", "letters, digits")),
        ({"name": "x" * 65}, 400, ("name:",)),
        ({"name": ""}, 400, ("name:",)),
        ({"cron": "0 0 30 2 *"}, 400, ("cron:", "never fires")),
        ({"cron": "* * * * *"}, 400, ("cron:", "every 5 minutes")),
        ({"cron": "*/3 * * * *"}, 400, ("cron:", "every 3 minutes")),
        ({"cron": "0 6 * *"}, 400, ("cron:", "five fields")),
        ({"cron": "@daily"}, 400, ("cron:", "five fields")),
        ({"cron": "0 25 * * *"}, 400, ("cron:", "not valid")),
        ({"timezone": "Mars/Olympus"}, 400, ("timezone:", "unknown time zone")),
        ({"start_at": "2031-01-02T00:00", "end_at": "2031-01-01T00:00"}, 400, ("end_at:",)),
        ({"start_at": "next tuesday"}, 400, ("start_at:", "ISO 8601")),
        ({"enabled": "yes"}, 400, ("enabled:",)),
        ({"job": {"path": "missing.py"}}, 400, ("path:", "does not exist")),
        ({"job": {"path": "ok.py", "cpus": 0}}, 400, ("cpus:",)),
        ({"job": {"path": "ok.py", "colour": "red"}}, 400, ("unknown field",)),
        ({"job": "ok.py"}, 400, ("job:",)),
        ({"extra": 1}, 400, ("unknown field(s): extra",)),
    ],
)
async def test_bad_schedules_are_refused(
    api: Any, scripts: Path, fields: dict[str, Any], status: int, words: tuple[str, ...]
) -> None:
    code, answer = await api("POST", "schedules", body=body(**fields))
    assert_error(code, answer, status, *words)
    code, listed = await api("GET", "schedules")
    assert listed == {"schedules": []}


async def test_required_fields(api: Any, scripts: Path) -> None:
    for field in ("name", "cron", "job"):
        sent = body()
        del sent[field]
        code, answer = await api("POST", "schedules", body=sent)
        assert_error(code, answer, 400, f"{field}: required")


# -- CRUD ---------------------------------------------------------------------------------------


async def test_create_show_list_and_duplicate(api: Any, scripts: Path) -> None:
    code, created = await api("POST", "schedules", body=body(start_at="2031-01-01T00:00"))
    assert code == 201, created
    assert created["name"] == "daily"
    assert created["enabled"] is True
    assert created["backend"] == "local"
    assert created["job"] == {"path": "ok.py", "backend": "local"}
    assert created["remote"] is False
    assert created["description"] == "at 06:00, Monday to Friday, Europe/Paris"
    # start_at without an offset is in the schedule's zone, and served back with it.
    assert created["start_at"] == "2031-01-01T00:00:00+01:00"
    # The next three: Thursday 2 (the 1st is a Wednesday but a holiday is still a weekday).
    assert created["next_runs"] == [
        {"utc": "2031-01-01T05:00:00Z", "local": "2031-01-01T06:00:00+01:00"},
        {"utc": "2031-01-02T05:00:00Z", "local": "2031-01-02T06:00:00+01:00"},
        {"utc": "2031-01-03T05:00:00Z", "local": "2031-01-03T06:00:00+01:00"},
    ]

    code, answer = await api("POST", "schedules", body=body())
    assert_error(code, answer, 409, "already exists")

    code, shown = await api("GET", "schedules", "daily")
    assert code == 200
    assert shown["runs"] == []
    assert len(shown["next_runs"]) == 3
    code, listed = await api("GET", "schedules")
    assert [s["name"] for s in listed["schedules"]] == ["daily"]
    assert listed["schedules"][0]["last_run"] is None


async def test_summer_time_in_the_local_zone(api: Any, scripts: Path) -> None:
    code, created = await api(
        "POST", "schedules", body=body(start_at="2031-07-01T00:00", end_at="2031-07-02T23:00")
    )
    assert code == 201, created
    # Only two within the end: 1 and 2 July, at 06:00 Paris = 04:00 UTC in summer.
    assert created["next_runs"] == [
        {"utc": "2031-07-01T04:00:00Z", "local": "2031-07-01T06:00:00+02:00"},
        {"utc": "2031-07-02T04:00:00Z", "local": "2031-07-02T06:00:00+02:00"},
    ]


async def test_patch_pause_resume_and_delete(api: Any, scripts: Path) -> None:
    await api("POST", "schedules", body=body())
    code, paused = await api("PATCH", "schedules", "daily", body={"enabled": False})
    assert code == 200, paused
    assert paused["enabled"] is False
    assert paused["next_runs"] == []
    code, changed = await api(
        "PATCH", "schedules", "daily", body={"enabled": True, "cron": "30 7 * * *"}
    )
    assert code == 200, changed
    assert changed["description"] == "at 07:30, every day, Europe/Paris"
    assert len(changed["next_runs"]) == 3

    code, answer = await api("PATCH", "schedules", "daily", body={"cron": "* * * * *"})
    assert_error(code, answer, 400, "cron:")
    code, answer = await api("PATCH", "schedules", "daily", body={"name": "other"})
    assert_error(code, answer, 400, "renamed")
    code, answer = await api("PATCH", "schedules", "daily", body={"job": {"path": "nope.py"}})
    assert_error(code, answer, 400, "path:")
    code, shown = await api("GET", "schedules", "daily")
    assert shown["cron"] == "30 7 * * *"
    assert shown["job"]["path"] == "ok.py"

    code, _ = await api("DELETE", "schedules", "daily")
    assert code == 204
    code, answer = await api("GET", "schedules", "daily")
    assert_error(code, answer, 404, "no schedule 'daily'")
    code, answer = await api("DELETE", "schedules", "daily")
    assert_error(code, answer, 404)


async def test_unknown_and_malformed_names(api: Any, service: Any) -> None:
    code, answer = await api("GET", "schedules", "nope")
    assert_error(code, answer, 404, "no schedule 'nope'")
    code, answer = await api("POST", "schedules", "nope", "run", body=b"")
    assert_error(code, answer, 404)
    code, answer = await api("PATCH", "schedules", "bad%20name", body={})
    assert_error(code, answer, 404, "letters, digits")


# -- runs ---------------------------------------------------------------------------------------


async def test_run_now(api: Any, scripts: Path) -> None:
    await api("POST", "schedules", body=body())
    code, job = await api("POST", "schedules", "daily", "run", body=b"")
    assert code == 201, job
    assert job["schedule"] == "daily"
    assert job["path"] == "ok.py"
    finished = await wait_state(api, job["id"], "succeeded", "failed")
    assert finished["state"] == "succeeded", finished
    code, shown = await api("GET", "schedules", "daily")
    assert shown["runs"][0]["job_id"] == job["id"]
    assert shown["runs"][0]["state"] == "succeeded"
    code, listed = await api("GET", "schedules")
    assert listed["schedules"][0]["last_run"]["job_id"] == job["id"]


async def test_delete_leaves_its_running_job_running(api: Any, scripts: Path) -> None:
    await api("POST", "schedules", body=body(job={"path": "slow.py"}))
    code, job = await api("POST", "schedules", "daily", "run", body=b"")
    assert code == 201, job
    await wait_state(api, job["id"], "running")
    code, _ = await api("DELETE", "schedules", "daily")
    assert code == 204
    code, still = await api("GET", "jobs", job["id"])
    assert still["state"] == "running"
    assert still["schedule"] == "daily"
    code, _ = await api("POST", "jobs", job["id"], "stop", body=b"")
    assert code == 202
    await wait_state(api, job["id"], "stopped")


# -- preview ------------------------------------------------------------------------------------


async def test_preview(api: Any, service: Any) -> None:
    code, preview = await api(
        "GET", "schedule-preview", params={"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}
    )
    assert code == 200, preview
    assert preview["description"] == "at 06:00, Monday to Friday, Europe/Paris"
    assert len(preview["next_runs"]) == 3
    first = datetime.fromisoformat(preview["next_runs"][0]["local"])
    assert (first.hour, first.minute) == (6, 0)
    assert first.weekday() < 5
    code, answer = await api("GET", "schedule-preview", params={"cron": "* * * * *"})
    assert_error(code, answer, 400, "cron:")
    code, answer = await api("GET", "schedule-preview")
    assert_error(code, answer, 400, "cron:")


# -- the jobs of one schedule -------------------------------------------------------------------


async def stored_runs(service: JobService) -> dict[str, list[str]]:
    """65 finished jobs, newest last: every 13th is a run of "daily", one of "weekly", the rest
    started by no schedule. The ids of each, newest first."""
    ids: dict[str, list[str]] = {"daily": [], "weekly": [], "none": []}
    for n in range(65):
        schedule = "daily" if n % 13 == 0 else ("weekly" if n == 30 else None)
        job = make_job(
            "ok.py", state=JobState.SUCCEEDED, created_at=1_000_000.0 + n, schedule=schedule
        )
        await service.store.insert(job)
        ids[schedule or "none"].insert(0, job.id)
    return ids


async def test_jobs_of_one_schedule_page_by_page(api: Any, service: JobService) -> None:
    ids = await stored_runs(service)
    # The unfiltered first page (50) holds only some of "daily"'s runs: the server filters.
    code, page = await api("GET", "jobs")
    assert code == 200 and len(page["jobs"]) == 50
    assert len([j for j in page["jobs"] if j["schedule"] == "daily"]) < len(ids["daily"])

    seen, cursor = [], None
    while True:
        params = {"schedule": "daily", "limit": "2", **({"cursor": cursor} if cursor else {})}
        code, page = await api("GET", "jobs", params=params)
        assert code == 200 and len(page["jobs"]) <= 2, page
        assert {j["schedule"] for j in page["jobs"]} == {"daily"}
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids["daily"] and len(seen) == 5

    code, page = await api("GET", "jobs", params={"schedule": "weekly"})
    assert [j["id"] for j in page["jobs"]] == ids["weekly"]
    code, page = await api("GET", "jobs", params={"schedule": "weekly", "state": "running"})
    assert page == {"jobs": [], "next_cursor": None}
    code, page = await api("GET", "jobs", params={"schedule": "never-ran"})
    assert page == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize("value", ["has space", "x" * 65, "a/b", "daily'--"])
async def test_a_bad_schedule_filter_is_refused(api: Any, service: Any, value: str) -> None:
    code, answer = await api("GET", "jobs", params={"schedule": value})
    assert_error(code, answer, 400, "schedule:", "letters, digits")


# -- the grace of local schedules in GET config -------------------------------------------------


class TestGraceInConfig:
    @pytest.fixture
    def awsjobs_config(self) -> dict[str, Any]:
        return {"missed_run_grace_minutes": 15}

    async def test_config_says_the_grace(self, api: Any) -> None:
        code, config = await api("GET", "config")
        assert code == 200
        assert config["schedules"] == {"missed_run_grace_minutes": 15}
