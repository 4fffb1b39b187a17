"""`awsjobs schedule ...` and the schedule functions of the Python API, against a real
Jupyter server with the local backend: create, list, show, pause, resume, run now, delete,
and the server's refusals as exit status 3 with its message."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from client_support import ServerProc, write_scripts

from awsjobs_lab import cli
from awsjobs_lab import client as api


@pytest.fixture
def sub(server: ServerProc, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = server.root / "schedsub"
    write_scripts(folder)
    monkeypatch.chdir(folder)
    return folder


def awsjobs(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["schedule", *args], out, err)
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_schedule_commands(sub: Path) -> None:
    code, out, err = awsjobs(
        "create", "nightly", "hello.py", "--cron", "0 2 * * *", "--timezone", "UTC",
        "--memory", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["description"] == "at 02:00, every day, UTC"
    assert created["job"] == {"path": "schedsub/hello.py", "spot": False, "memory_gib": 2.0,
                              "backend": "local"}  # fmt: skip

    code, out, _ = awsjobs("list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["NAME", "ENABLED", "NEXT"]
    assert "nightly" in out and "at 02:00, every day, UTC" in out

    code, out, _ = awsjobs("pause", "nightly")
    assert code == 0
    assert "no (paused)" in out
    assert "next run:" not in out
    code, out, _ = awsjobs("resume", "nightly")
    assert "enabled:       yes" in out
    assert out.count("next run:") == 3

    code, out, err = awsjobs("run", "nightly")
    assert code == 0, err
    job = api.get_job(out.strip())
    assert job.wait(timeout=180) == "succeeded"
    assert job.data["schedule"] == "nightly"
    code, out, _ = awsjobs("show", "nightly")
    assert job.id in out and "succeeded" in out

    code, _, err = awsjobs("delete", "nightly")
    assert code == 0
    assert "jobs it started go on" in err
    code, _, err = awsjobs("show", "nightly")
    assert code == cli.EXIT_SERVER
    assert "no schedule 'nightly'" in err


def test_refusals_are_the_servers_message(sub: Path) -> None:
    code, _, err = awsjobs("create", "often", "hello.py", "--cron", "* * * * *")
    assert code == cli.EXIT_SERVER
    assert "cron:" in err and "every 5 minutes" in err
    code, _, err = awsjobs("create", "bad name", "hello.py", "--cron", "0 2 * * *")
    assert code == cli.EXIT_SERVER
    assert "name:" in err
    with pytest.raises(SystemExit):
        cli.main(["schedule", "create", "x", "hello.py"], io.StringIO(), io.StringIO())


def test_python_api(sub: Path) -> None:
    start = datetime(2031, 1, 1, tzinfo=timezone.utc)
    created = api.create_schedule(
        "weekly", "30 7 * * 1", "hello.py", timezone="Europe/Paris", start_at=start, cpu=1
    )
    assert created["next_runs"][0] == {
        "utc": "2031-01-06T06:30:00Z",
        "local": "2031-01-06T07:30:00+01:00",
    }
    assert created["job"]["cpus"] == 1
    assert [s["name"] for s in api.list_schedules()] == ["weekly"]

    changed = api.update_schedule("weekly", cron="0 8 * * 1", job={"script": "lines.py"})
    assert changed["cron"] == "0 8 * * 1"
    assert changed["job"]["path"] == "schedsub/lines.py"
    assert api.pause_schedule("weekly")["enabled"] is False
    assert api.resume_schedule("weekly")["enabled"] is True

    job = api.run_schedule("weekly")
    assert job.wait(timeout=180) == "succeeded"
    assert api.get_schedule("weekly")["runs"][0]["job_id"] == job.id

    with pytest.raises(api.InvalidRequest, match="cron:"):
        api.update_schedule("weekly", cron="0 0 30 2 *")
    api.delete_schedule("weekly")
    with pytest.raises(api.JobNotFound, match="no schedule"):
        api.get_schedule("weekly")
