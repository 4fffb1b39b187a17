"""The schedules' tables: one store migration (appended to `store.MIGRATIONS`), here so the job
store module stays about jobs. No imports: `store.py` imports this file."""

# The schedule a job's record names, as the `jobs_by_schedule` index spells it: a query
# filtering on this very expression (`= ?`) is answered from that index.
JOB_SCHEDULE = "json_extract(record, '$.schedule')"

# Schedules (a JSON record, like jobs), what happened to firings that started no job (missed
# while the server was down, refused), and the index of a schedule's runs among the jobs.
SCHEDULES_MIGRATION = """
CREATE TABLE schedules (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE schedule_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    scheduled_for REAL NOT NULL,
    at REAL NOT NULL,
    error TEXT
);
CREATE INDEX schedule_events_by_name ON schedule_events (owner, name, at DESC);
CREATE INDEX jobs_by_schedule ON jobs (json_extract(record, '$.schedule'), created_at DESC)
    WHERE json_extract(record, '$.schedule') IS NOT NULL
"""
