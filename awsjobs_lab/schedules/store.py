"""Schedules in the job store's SQLite file, on its one thread (the job store's executor and
connection, so a schedule and its jobs are read and written in the same serial order).

A schedule's runs are the jobs whose record names it (`jobs_by_schedule` index); firings that
started no job (missed while the server was down, refused) are `schedule_events`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import Conflict
from ..models import now
from ..store import JobStore
from .model import Schedule, ScheduleNotFound
from .schema import JOB_SCHEDULE

# A change applied to the loaded schedule inside the write transaction.
ScheduleChange = Callable[[Schedule], None]


class ScheduleStore:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    def _load(self, owner: str, name: str) -> Schedule:
        row = self.jobs._db.execute(
            "SELECT record FROM schedules WHERE owner = ? AND name = ?", (owner, name)
        ).fetchone()
        if row is None:
            raise ScheduleNotFound(f"no schedule {name!r}")
        return Schedule.from_record(json.loads(row[0]))

    def _save(self, schedule: Schedule) -> None:
        self.jobs._db.execute(
            "INSERT OR REPLACE INTO schedules (owner, name, record) VALUES (?, ?, ?)",
            (schedule.owner, schedule.name, json.dumps(schedule.to_record())),
        )

    async def insert(self, schedule: Schedule) -> Schedule:
        """Add a new schedule; `Conflict` if the owner has one of that name."""

        def insert() -> Schedule:
            exists = self.jobs._db.execute(
                "SELECT 1 FROM schedules WHERE owner = ? AND name = ?",
                (schedule.owner, schedule.name),
            ).fetchone()
            if exists:
                raise Conflict(f"a schedule named {schedule.name!r} already exists")
            self._save(schedule)
            return schedule

        return await self.jobs._run(self.jobs._write, insert)

    async def put(self, schedule: Schedule) -> None:
        """Insert or replace (a remote schedule's copy)."""
        await self.jobs._run(self.jobs._write, lambda: self._save(schedule))

    async def get(self, owner: str, name: str) -> Schedule:
        return await self.jobs._run(self._load, owner, name)

    async def of_owner(self, owner: str) -> list[Schedule]:
        def query() -> list[Schedule]:
            rows = self.jobs._db.execute(
                "SELECT record FROM schedules WHERE owner = ? ORDER BY name", (owner,)
            ).fetchall()
            return [Schedule.from_record(json.loads(r[0])) for r in rows]

        return await self.jobs._run(query)

    async def update(self, owner: str, name: str, change: ScheduleChange) -> Schedule:
        """Load, `change(schedule)`, stamp `updated_at` and save, in one transaction."""

        def update() -> Schedule:
            schedule = self._load(owner, name)
            change(schedule)
            schedule.updated_at = now()
            self._save(schedule)
            return schedule

        return await self.jobs._run(self.jobs._write, update)

    async def delete(self, owner: str, name: str) -> None:
        """Forget the schedule and its events (`ScheduleNotFound` if none); its jobs stay."""

        def delete() -> None:
            self._load(owner, name)
            self.jobs._db.execute(
                "DELETE FROM schedules WHERE owner = ? AND name = ?", (owner, name)
            )
            self.jobs._db.execute(
                "DELETE FROM schedule_events WHERE owner = ? AND name = ?", (owner, name)
            )

        await self.jobs._run(self.jobs._write, delete)

    async def record_event(
        self, owner: str, name: str, state: str, scheduled_for: float, error: str | None = None
    ) -> None:
        """A firing that started no job: `missed` (the server was down) or `failed`."""

        def insert() -> None:
            self.jobs._db.execute(
                "INSERT INTO schedule_events (owner, name, state, scheduled_for, at, error)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (owner, name, state, scheduled_for, now(), error),
            )

        await self.jobs._run(self.jobs._write, insert)

    async def runs(self, owner: str, name: str, limit: int) -> list[dict[str, Any]]:
        """The last `limit` runs, newest first: its jobs and its events, as the API shows
        them (`job_id` null for an event)."""

        def query() -> list[dict[str, Any]]:
            db = self.jobs._db
            jobs = db.execute(
                f"SELECT record FROM jobs WHERE {JOB_SCHEDULE} = ? ORDER BY created_at DESC"
                " LIMIT ?",
                (name, limit),
            ).fetchall()
            events = db.execute(
                "SELECT state, scheduled_for, at, error FROM schedule_events"
                " WHERE owner = ? AND name = ? ORDER BY at DESC, id DESC LIMIT ?",
                (owner, name, limit),
            ).fetchall()
            runs = [_job_run(json.loads(r[0])) for r in jobs]
            runs += [
                {
                    "job_id": None,
                    "state": state,
                    "created_at": at,
                    "scheduled_for": scheduled_for,
                    "finished_at": at,
                    "error": error,
                }
                for state, scheduled_for, at, error in events
            ]
            runs.sort(key=lambda run: run["created_at"], reverse=True)
            return runs[:limit]

        return await self.jobs._run(query)

    async def scheduled_job_ids(self) -> set[str]:
        """Ids of every job a schedule started (what an import already has)."""

        def query() -> set[str]:
            rows = self.jobs._db.execute(
                f"SELECT id FROM jobs WHERE {JOB_SCHEDULE} IS NOT NULL"
            ).fetchall()
            return {r[0] for r in rows}

        return await self.jobs._run(query)


def _job_run(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": record["id"],
        "state": record["state"],
        "created_at": record["created_at"],
        "scheduled_for": None,  # a job knows when it was created, not when it was due
        "finished_at": record.get("finished_at"),
        "error": record.get("error"),
    }
