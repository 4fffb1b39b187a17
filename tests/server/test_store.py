"""store: migrations, WAL, atomic transitions along the state machine, keyset pages."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from itertools import product
from pathlib import Path

import pytest

from awsjobs_lab import models
from awsjobs_lab.errors import Conflict, InvalidRequest, JobNotFound, StoreUnavailable
from awsjobs_lab.models import ALLOWED_TRANSITIONS, InvalidTransition, JobState
from awsjobs_lab.store import MAX_PAGE, MIGRATIONS, JobStore
from tests.server.helpers import make_job


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = JobStore(tmp_path / "db" / "jobs.sqlite")
    await s.open()
    yield s
    await s.close()


async def test_schema_version_and_wal(store: JobStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"jobs_by_created", "jobs_by_state", "jobs_by_backend"} <= indexes
    finally:
        conn.close()


async def test_migrations_run_once_and_from_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    await first.open()
    job = make_job()
    await first.insert(job)
    await first.close()
    again = JobStore(path)  # reopening at the current version runs nothing, keeps the data
    await again.open()
    assert (await again.get(job.id)).id == job.id
    await again.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    store = JobStore(path)
    with pytest.raises(StoreUnavailable, match="newer"):
        await store.open()
    await store.close()


async def test_one_server_per_file(store: JobStore) -> None:
    other = JobStore(store.path)
    with pytest.raises(Conflict, match="another Jupyter server"):
        await other.open()
    await store.close()
    await other.open()  # free again once the first has closed
    await other.close()


async def test_insert_get_update_and_missing(store: JobStore) -> None:
    job = make_job(env={"A": "1"}, parameters={"p": [1, 2]})
    await store.insert(job)
    got = await store.get(job.id)
    assert got.to_record() == job.to_record()
    updated = await store.update(job.id, handle={"pid": 12}, command=["python", "x.py"])
    updated = await store.update(job.id, handle={"pgid": 12})
    assert updated.handle == {"pid": 12, "pgid": 12}
    assert (await store.get(job.id)).command == ["python", "x.py"]
    with pytest.raises(ValueError, match="state"):
        await store.update(job.id, state=JobState.RUNNING)
    with pytest.raises(JobNotFound):
        await store.get("0" * 16)


@pytest.mark.parametrize(("current", "target"), list(product(JobState, JobState)))
async def test_every_transition_is_allowed_or_refused(
    store: JobStore, current: JobState, target: JobState
) -> None:
    job = make_job(state=current)
    await store.insert(job)
    if target in ALLOWED_TRANSITIONS[current]:
        moved = await store.transition(job.id, target, "because", exit_code=3)
        assert moved.state is target
        assert moved.history[-1].state is target and moved.history[-1].reason == "because"
        assert moved.exit_code == 3
        assert (moved.finished_at is not None) == target.is_terminal
    else:
        with pytest.raises(InvalidTransition):
            await store.transition(job.id, target, "nope", exit_code=3)
        unchanged = await store.get(job.id)
        assert unchanged.state is current and unchanged.exit_code is None
        assert len(unchanged.history) == 1


async def test_expected_states_narrow_a_transition(store: JobStore) -> None:
    job = make_job(state=JobState.STOPPING)
    await store.insert(job)
    # stopping → failed is an edge, but not for a caller that expects a running job.
    with pytest.raises(InvalidTransition):
        await store.transition(job.id, JobState.FAILED, expected={JobState.RUNNING})
    assert (await store.get(job.id)).state is JobState.STOPPING


async def test_history_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    await store.open()
    job = make_job()
    await store.insert(job)
    for state in (JobState.LAUNCHING, JobState.RUNNING, JobState.SUCCEEDED):
        await store.transition(job.id, state, f"to {state.value}")
    await store.close()
    store = JobStore(path)
    await store.open()
    got = await store.get(job.id)
    await store.close()
    assert [t.state for t in got.history] == [
        JobState.PENDING,
        JobState.LAUNCHING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert [t.reason for t in got.history][1:] == ["to launching", "to running", "to succeeded"]
    assert all(a.at <= b.at for a, b in zip(got.history, got.history[1:], strict=False))


async def test_concurrent_transitions_one_wins(store: JobStore) -> None:
    job = make_job(state=JobState.RUNNING)
    await store.insert(job)
    results = await asyncio.gather(
        store.transition(job.id, JobState.STOPPING, "stop"),
        store.transition(job.id, JobState.SUCCEEDED, "done", expected={JobState.RUNNING}),
        return_exceptions=True,
    )
    assert sum(isinstance(r, InvalidTransition) for r in results) == 1
    final = await store.get(job.id)
    assert final.state is JobState.STOPPING  # first queued, first applied


async def test_pages_newest_first_with_cursor(store: JobStore) -> None:
    jobs = [make_job(created_at=1000.0 + i // 3) for i in range(25)]  # ties on created_at
    for job in jobs:
        await store.insert(job)
    expected = sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_jobs(limit=7, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert [j.id for j in seen] == [j.id for j in expected]


async def test_state_filter_and_limits(store: JobStore) -> None:
    for i, state in enumerate([JobState.RUNNING, JobState.PENDING, JobState.FAILED] * 4):
        await store.insert(make_job(state=state, created_at=2000.0 + i))
    page, cursor = await store.list_jobs(states={JobState.RUNNING, JobState.PENDING})
    assert len(page) == 8 and cursor is None
    assert {j.state for j in page} == {JobState.RUNNING, JobState.PENDING}
    assert [j.created_at for j in page] == sorted((j.created_at for j in page), reverse=True)
    page, cursor = await store.list_jobs(limit=MAX_PAGE + 100)
    assert len(page) == 12 and cursor is None
    assert [j.state for j in await store.list_active()].count(JobState.FAILED) == 0


async def test_page_as_json_is_the_page_encoded(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # list_jobs_json encodes in the store thread what the handler used to encode itself.
    monkeypatch.setattr(models, "now", lambda: 5000.0)  # running jobs' elapsed time
    for i, state in enumerate([JobState.RUNNING, JobState.SUCCEEDED, JobState.PENDING] * 3):
        await store.insert(make_job(state=state, created_at=3000.0 + i, started_at=3000.0 + i))
    cursor = None
    for _ in range(4):
        page, next_cursor = await store.list_jobs({JobState.RUNNING, JobState.SUCCEEDED}, 4, cursor)
        body = await store.list_jobs_json({JobState.RUNNING, JobState.SUCCEEDED}, 4, cursor)
        expected = {"jobs": [j.to_dict() for j in page], "next_cursor": next_cursor}
        assert body == json.dumps(expected).encode()
        cursor = next_cursor
        if cursor is None:
            break
    assert cursor is None
    with pytest.raises(InvalidRequest, match="cursor"):
        await store.list_jobs_json(cursor="garbage!")


@pytest.mark.parametrize("cursor", ["garbage!", "e30", "WzEsMl0", "WyJ4IiwgMV0", "%%%"])
async def test_bad_cursor(store: JobStore, cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor"):
        await store.list_jobs(cursor=cursor)


async def test_delete_only_finished_jobs(store: JobStore) -> None:
    active = make_job(state=JobState.RUNNING)
    done = make_job(state=JobState.SUCCEEDED)
    await store.insert(active)
    await store.insert(done)
    with pytest.raises(Conflict):
        await store.delete(active.id)
    await store.delete(done.id)
    with pytest.raises(JobNotFound):
        await store.get(done.id)
    assert await store.count() == 1


async def test_ten_thousand_jobs_list_and_get(store: JobStore) -> None:
    # Bulk-load through SQL (fast), then check the queries the API makes use the indexes.
    def load() -> None:
        import json

        db = sqlite3.connect(store.path)
        states = [JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING]
        rows = []
        for i in range(10_000):
            job = make_job(state=states[i % 3], created_at=float(i))
            rows.append(
                (
                    job.id,
                    job.state.value,
                    job.backend,
                    job.created_at,
                    job.updated_at,
                    json.dumps(job.to_record()),
                )
            )
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        plan = " ".join(
            str(r)
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT record FROM jobs WHERE state IN ('running')"
                " ORDER BY created_at DESC, id DESC LIMIT 51"
            )
        )
        db.close()
        assert "jobs_by_state" in plan, plan

    await asyncio.to_thread(load)
    page, cursor = await store.list_jobs(states={JobState.RUNNING}, limit=50)
    assert len(page) == 50 and cursor
    assert page[0].created_at == 9999.0 or page[0].state is JobState.RUNNING
    page2, _ = await store.list_jobs(states={JobState.RUNNING}, limit=50, cursor=cursor)
    assert page2[0].created_at < page[-1].created_at
    assert (await store.get(page[3].id)).id == page[3].id
