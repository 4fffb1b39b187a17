"""Schedules (issue 14): recurring jobs from a cron expression.

`model.py` (the Schedule), `cron.py` (the one place cron is parsed), `remote.py` (what a backend
that keeps schedules outside this server offers), `store.py` (SQLite, on the job store's
thread), `timer.py` (the one timer of local schedules), `service.py` (what the handlers call).
"""
