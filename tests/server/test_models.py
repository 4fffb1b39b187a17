"""models: the Job's JSON (REST) and record (store) shapes, written field by field, are
exactly what `dataclasses.asdict` gave, key order included."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from awsjobs_lab import models
from awsjobs_lab.models import Attempt, Job, JobState, Transition
from tests.server.helpers import make_job

NOW = 1_700_000_900.0


def _asdict_record(job: Job) -> dict[str, Any]:
    """The former `to_record`, built on `dataclasses.asdict`."""
    data = dataclasses.asdict(job)
    data["state"] = job.state.value
    data["history"] = [t.to_dict() for t in job.history]
    return data


def _asdict_json(job: Job) -> dict[str, Any]:
    """The former `to_dict`."""
    data = _asdict_record(job)
    data["instance_id"] = job.instance_id
    data["elapsed_seconds"] = job.elapsed_seconds()
    data["cost_so_far"] = job.cost_so_far()
    return data


# A spot attempt interrupted, then an on-demand one running.
TWO_ATTEMPTS = [
    Attempt(1, True, "i-0a", "m7i.large", "us-east-1b", 0.04, NOW - 600, NOW - 300, "interrupted"),
    Attempt(2, False, "i-0123456789abcdef0", "m7i.large", started_at=NOW - 290),
]


def _full_job(**fields: Any) -> Job:
    """Every field set to something other than its default."""
    values: dict[str, Any] = {
        "state": JobState.FAILED,
        "created_at": 1_700_000_000.0,
        "memory_gib": 16.0,
        "cpus": 4,
        "spot": True,
        "max_lifetime_minutes": 90,
        "env": {"A": "1", "B": "two words", "UNICODE": "é✓"},
        "parameters": {"alpha": 0.5, "n": 3, "name": "x", "nested": {"k": [1, 2, {"z": None}]}},
        "instance_type": "m7i.large",
        "requested_instance_type": "m7i.large",
        "hourly_price": 0.1008,
        "output_path": "out/report.abc.ipynb",
        "command": ["papermill", "report.ipynb", "out/report.abc.ipynb", "-p", "n", "3"],
        "exit_code": 3,
        "error": "exited with code 3",
        "started_at": 1_700_000_010.5,
        "finished_at": 1_700_000_400.25,
        "stop_requested": True,
        "handle": {"instance_id": "i-0123456789abcdef0", "command_id": "c-1", "zone": None},
        "history": [
            Transition(JobState.PENDING, 1_700_000_000.0, "created"),
            Transition(JobState.LAUNCHING, 1_700_000_001.0),
            Transition(JobState.RUNNING, 1_700_000_010.5, "instance running"),
            Transition(JobState.FAILED, 1_700_000_400.25, "exited with code 3"),
        ],
    }
    values.update(fields)
    return make_job("nb/report.ipynb", backend="ec2", **values)


@pytest.mark.parametrize(
    "job",
    [
        _full_job(),
        _full_job(state=JobState.RUNNING, finished_at=None, exit_code=None, error=None),
        make_job(),  # the defaults: empty containers, None everywhere
        _full_job(state=JobState.RUNNING, finished_at=None, attempts=TWO_ATTEMPTS),
    ],
    ids=["finished", "running", "defaults", "relaunched"],
)
def test_json_and_record_match_the_asdict_shapes(job: Job, monkeypatch: Any) -> None:
    monkeypatch.setattr(models, "now", lambda: NOW)  # elapsed time of a running job
    assert json.dumps(job.to_dict()) == json.dumps(_asdict_json(job))
    assert json.dumps(job.to_record()) == json.dumps(_asdict_record(job))
    assert list(job.to_record()) == [f.name for f in dataclasses.fields(Job)]


def test_an_attempt_is_every_field_of_asdict_in_order() -> None:
    full = Attempt(3, True, "i-1", "c7i.xlarge", "us-east-1a", 0.2, 10.0, 20.0, "succeeded", 0.5)
    for attempt in (full, Attempt(1, False)):
        assert list(attempt.to_dict().items()) == list(dataclasses.asdict(attempt).items())
        assert Attempt.from_dict(attempt.to_dict()) == attempt


def test_running_job_has_derived_fields(monkeypatch: Any) -> None:
    monkeypatch.setattr(models, "now", lambda: NOW)
    data = _full_job(state=JobState.RUNNING, finished_at=None).to_dict()
    assert data["instance_id"] == "i-0123456789abcdef0"
    assert data["elapsed_seconds"] == NOW - 1_700_000_010.5
    assert data["cost_so_far"] == round(0.1008 * (NOW - 1_700_000_010.5) / 3600.0, 6)


def test_record_round_trip_and_no_aliasing() -> None:
    job = _full_job()
    record = json.loads(json.dumps(job.to_record()))
    assert Job.from_record(record) == job
    # Unknown keys (a newer version's record) are ignored.
    assert Job.from_record({**record, "from_the_future": 1}) == job
    # The result's containers are the caller's: changing them leaves the job alone.
    data = job.to_dict()
    data["env"]["A"] = "changed"
    data["handle"].clear()
    data["command"].append("more")
    assert job.env["A"] == "1" and job.handle and job.command[-1] == "3"
