"""The job store: SQLite (stdlib) in WAL mode, used from one dedicated thread.

Every call runs in a single-thread executor that owns the connection, so the event loop never
blocks on disk and calls are serialised: a read-check-write (a state transition) is one SQL
transaction in one executor call, atomic against every other call of this process; the
`BEGIN IMMEDIATE` and the busy timeout cover a second process on the same file.

The schema evolves by `PRAGMA user_version` and the ordered `MIGRATIONS` list: migration `i`
brings the file from version `i` to `i + 1`. Never edit a released migration; append one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import errno
import fcntl
import json
import math
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .errors import Conflict, InvalidRequest, JobNotFound, StoreUnavailable
from .models import ALLOWED_TRANSITIONS, InvalidTransition, Job, JobState, Transition, now
from .schedules.schema import JOB_SCHEDULE, SCHEDULES_MIGRATION

T = TypeVar("T")

DEFAULT_PAGE = 50
MAX_PAGE = 500

MIGRATIONS: list[str] = [
    # 0 → 1: one row per job, the record as JSON, the columns we filter and sort on indexed.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        backend TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC);
    CREATE INDEX jobs_by_state ON jobs (state, created_at DESC, id DESC);
    CREATE INDEX jobs_by_backend ON jobs (backend);
    """,
    SCHEDULES_MIGRATION,  # 1 → 2
]

# A change applied to the loaded job inside the write transaction (e.g. closing its current
# attempt and opening the next), so it is atomic with the rest of the update.
JobChange = Callable[[Job], None]

# Fields a caller may set through `update`/`transition`; the rest belong to the store.
_OWN_FIELDS = frozenset({"id", "state", "history", "created_at", "updated_at"})
_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job))


def _advice(err: BaseException) -> str:
    """What to do about a store that failed with `err`."""
    text = str(err).lower()
    code = getattr(err, "errno", None) if isinstance(err, OSError) else None
    if "full" in text or code == errno.ENOSPC:
        return "free disk space on its file system"
    if (
        "readonly" in text
        or "read-only" in text
        or code in (errno.EACCES, errno.EPERM, errno.EROFS)
    ):
        return (
            "make the file and its folder writable by this server, or set c.AWSJobs.data_path "
            "to a writable folder"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            "move the file aside (the server then starts a new, empty store and forgets its "
            "jobs) or restore it from a backup"
        )
    return "check the file and its folder, or set c.AWSJobs.data_path to another folder"


def unavailable(path: Path, err: BaseException) -> StoreUnavailable:
    """The error of a store file that cannot be opened or written, with what to do."""
    detail = str(err) or type(err).__name__
    return StoreUnavailable(
        f"the job store {path} cannot be used ({detail}): {_advice(err)}; then retry "
        "(restart the server if it keeps failing)"
    )


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at, job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor is base64 of `[created_at, id]`: well under this. Longer is not ours (and a long
# one could nest JSON deep enough to exhaust the parser's recursion).
MAX_CURSOR_CHARS = 200


def _decode_cursor(cursor: str) -> tuple[float, str]:
    bad = InvalidRequest("cursor: not a cursor returned by this server")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeError, RecursionError):
        raise bad from None
    if (
        not isinstance(created_at, (int, float))
        or isinstance(created_at, bool)
        or (isinstance(created_at, float) and not math.isfinite(created_at))
        or not isinstance(job_id, str)
    ):
        raise bad
    return float(created_at), job_id


class JobStore:
    """Async façade over one SQLite file. `open()` before use, `close()` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock: int | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreUnavailable(
                f"the job store {self.path} is not open (the server is "
                "starting or stopping); retry in a moment"
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # our own mistake, not the file's
        except sqlite3.Error as err:  # corrupt, read-only, disk full, I/O error
            raise unavailable(self.path, err) from err

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "the job store is not open"
        return self._conn

    async def open(self) -> None:
        """Open (creating or migrating) the file. `Conflict` if another server has it open:
        two servers driving the same jobs would race each other's outcomes."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="awsjobs-store")
        try:
            await self._run(self._open)
        except BaseException as err:
            await self._run(self._close)
            self._executor.shutdown(wait=True)
            self._executor = None
            if isinstance(err, OSError):  # its folder or lock file cannot be made or opened
                raise unavailable(self.path, err) from err
            raise

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # An advisory lock held while open; the kernel drops it if the process dies.
        lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise Conflict(
                f"another Jupyter server is already using {self.path}: give this server its "
                "own c.AWSJobs.data_path"
            ) from None
        self._lock = lock
        conn = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions
        self._conn = conn
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"the job store {self.path} has schema version {version}, newer than this "
                    f"awsjobs_lab ({len(MIGRATIONS)}): upgrade awsjobs_lab"
                )
            for index in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {index + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _write(self, fn: Callable[[], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction (in the store thread)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _load(self, job_id: str) -> Job:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return Job.from_record(json.loads(row[0]))

    def _save(self, job: Job) -> None:
        self._db.execute(
            "UPDATE jobs SET state = ?, backend = ?, updated_at = ?, record = ? WHERE id = ?",
            (job.state.value, job.backend, job.updated_at, json.dumps(job.to_record()), job.id),
        )

    @staticmethod
    def _apply(job: Job, fields: Mapping[str, Any], handle: Mapping[str, Any] | None) -> None:
        bad = set(fields) - (_JOB_FIELDS - _OWN_FIELDS)
        if bad:
            raise ValueError(f"cannot set job field(s): {', '.join(sorted(bad))}")
        for name, value in fields.items():
            setattr(job, name, value)
        if handle:
            job.handle = {**job.handle, **handle}

    # -- API ---------------------------------------------------------------------------------

    async def insert(self, job: Job) -> Job:
        def insert() -> Job:
            self._db.execute(
                "INSERT INTO jobs (id, state, backend, created_at, updated_at, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.state.value,
                    job.backend,
                    job.created_at,
                    job.updated_at,
                    json.dumps(job.to_record()),
                ),
            )
            return job

        return await self._run(self._write, insert)

    async def get(self, job_id: str) -> Job:
        return await self._run(self._load, job_id)

    @staticmethod
    def _page_query(
        states: Collection[JobState] | None,
        limit: int,
        cursor: str | None,
        backend: str | None,
        schedule: str | None = None,
    ) -> tuple[str, list[Any]]:
        """SQL and arguments of one page, newest first, with one row more than `limit` (it
        tells whether a next page exists); `schedule`: only the jobs it started. Raises
        InvalidRequest for a bad cursor."""
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if backend is not None:
            where.append("backend = ?")
            args.append(backend)
        if schedule is not None:
            where.append(f"{JOB_SCHEDULE} = ?")  # the jobs_by_schedule index
            args.append(schedule)
        if cursor:
            created_at, job_id = _decode_cursor(cursor)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args.extend([created_at, created_at, job_id])
        sql = "SELECT record FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        return sql, args

    def _read_page(
        self,
        states: Collection[JobState] | None,
        limit: int,
        cursor: str | None,
        backend: str | None,
        schedule: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page and the cursor of the next (None at the end); in the store thread."""
        limit = max(1, min(limit, MAX_PAGE))
        sql, args = self._page_query(states, limit, cursor, backend, schedule)
        rows = self._db.execute(sql, args).fetchall()
        jobs = [Job.from_record(json.loads(r[0])) for r in rows]
        if len(jobs) > limit:
            jobs = jobs[:limit]
            return jobs, _encode_cursor(jobs[-1])
        return jobs, None

    async def list_jobs(
        self,
        states: Collection[JobState] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        backend: str | None = None,
        schedule: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first. Returns the page and the cursor of the next page (None at the end);
        `schedule`: only the jobs that schedule started."""
        return await self._run(self._read_page, states, limit, cursor, backend, schedule)

    async def list_jobs_json(
        self,
        states: Collection[JobState] | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
        backend: str | None = None,
        schedule: str | None = None,
    ) -> bytes:
        """The same page as `list_jobs`, as the REST answer `{"jobs": [...], "next_cursor"}`
        encoded to JSON bytes. Decoding the records, converting and encoding all happen in
        the store thread, in the same hop as the read, so the event loop only writes bytes:
        a page of 50 jobs costs it nothing per job."""

        def page() -> bytes:
            jobs, next_cursor = self._read_page(states, limit, cursor, backend, schedule)
            body = {"jobs": [j.to_dict() for j in jobs], "next_cursor": next_cursor}
            return json.dumps(body).encode()

        return await self._run(page)

    async def list_active(self) -> list[Job]:
        """Every active job, oldest first (no paging: reconciliation needs them all)."""
        active = [s.value for s in JobState if s.is_active]

        def query() -> list[Job]:
            rows = self._db.execute(
                f"SELECT record FROM jobs WHERE state IN ({', '.join('?' * len(active))})"
                " ORDER BY created_at, id",
                active,
            ).fetchall()
            return [Job.from_record(json.loads(r[0])) for r in rows]

        return await self._run(query)

    async def update(
        self,
        job_id: str,
        handle: Mapping[str, Any] | None = None,
        *,
        change: JobChange | None = None,
        **fields: Any,
    ) -> Job:
        """Set fields (and merge `handle` into the job's handle) without changing its state;
        then `change(job)`, in the same transaction."""

        def update() -> Job:
            job = self._load(job_id)
            self._apply(job, fields, handle)
            if change is not None:
                change(job)
            job.updated_at = now()
            self._save(job)
            return job

        return await self._run(self._write, update)

    async def transition(
        self,
        job_id: str,
        target: JobState,
        reason: str | None = None,
        *,
        expected: Iterable[JobState] | None = None,
        handle: Mapping[str, Any] | None = None,
        change: JobChange | None = None,
        **fields: Any,
    ) -> Job:
        """Move a job to `target` along `ALLOWED_TRANSITIONS`, atomically, with `fields` (and
        `change(job)`, applied before the move).

        `expected` narrows the states it may come from. Raises `InvalidTransition` (and
        changes nothing) if the move is not allowed from the job's current state. Entering a
        terminal state sets `finished_at` unless given."""
        allowed_from = frozenset(expected) if expected is not None else None

        def transition() -> Job:
            job = self._load(job_id)
            if target not in ALLOWED_TRANSITIONS[job.state] or (
                allowed_from is not None and job.state not in allowed_from
            ):
                raise InvalidTransition(job_id, job.state, target)
            self._apply(job, fields, handle)
            if change is not None:
                change(job)
            at = now()
            job.state = target
            job.updated_at = at
            if target.is_terminal and job.finished_at is None:
                job.finished_at = at
            if target.is_terminal:
                job.end_attempt(target.value, at)
            job.history.append(Transition(target, at, reason))
            self._save(job)
            return job

        return await self._run(self._write, transition)

    async def delete(self, job_id: str) -> None:
        """Delete a finished job; `Conflict` while it is active."""

        def delete() -> None:
            job = self._load(job_id)
            if job.is_active:
                raise Conflict(f"job {job_id} is {job.state.value}: stop it before deleting it")
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

        await self._run(self._write, delete)

    async def count(self) -> int:
        def count() -> int:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

        return await self._run(count)
