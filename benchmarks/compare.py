"""Side by side with jupyter-scheduler 2.12.1: end-to-end, create latency, list latency.

Both servers run at once, each in its own temp root; workloads alternate between them so that
drift in the machine's load hits both alike, and only one workload is active at a time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .report import Report
from .servers import HELLO_NOTEBOOK, Server, log
from .util import Client, ms, p50, percentile

SECTION = "vs jupyter-scheduler"
NOTEBOOK = "hello.ipynb"
POLL = 0.02  # seconds between status reads while waiting for a job (same for both)


class JobAPI(Protocol):
    name: str

    def create(self, client: Client) -> tuple[str, float]:
        """POST one job for the hello notebook; (job id, seconds the POST took)."""

    def status(self, client: Client, job_id: str) -> str:
        """'finished', 'failed' or 'waiting'."""

    def list_first_page(self, client: Client, page: int) -> float:
        """GET the first page of the job list, newest first; seconds it took."""

    def phases(self, client: Client, job_id: str, posted: float) -> tuple[float, float]:
        """(POST → work started, work started → work ended) in seconds, from the server's
        own timestamps of a finished job (`posted` is the client's time.time() of the POST)."""


def write_notebook(root: Path) -> None:
    (root / NOTEBOOK).write_text(json.dumps(HELLO_NOTEBOOK))


@dataclass
class Ours:
    name: str = "ours"

    def create(self, client: Client) -> tuple[str, float]:
        resp = client.post("/awsjobs/api/jobs", {"path": NOTEBOOK})
        return str(resp.json()["id"]), resp.seconds

    def status(self, client: Client, job_id: str) -> str:
        state = client.get(f"/awsjobs/api/jobs/{job_id}").json()["state"]
        if state == "succeeded":
            return "finished"
        if state in ("failed", "stopped", "timed_out", "interrupted"):
            return "failed"
        return "waiting"

    def list_first_page(self, client: Client, page: int) -> float:
        resp = client.get(f"/awsjobs/api/jobs?limit={page}")
        return resp.seconds

    def phases(self, client: Client, job_id: str, posted: float) -> tuple[float, float]:
        job = client.get(f"/awsjobs/api/jobs/{job_id}").json()
        return job["started_at"] - posted, job["finished_at"] - job["started_at"]


@dataclass
class Peer:
    """jupyter-scheduler's REST API, as its own UI calls it."""

    environment: str = "python"
    name: str = "peer"

    def setup(self, client: Client) -> None:
        envs = client.get("/scheduler/runtime_environments").json()
        if envs:
            self.environment = str(envs[0]["name"])

    def create(self, client: Client) -> tuple[str, float]:
        body = {
            "input_uri": NOTEBOOK,
            "runtime_environment_name": self.environment,
            "name": "hello",
            "output_formats": ["ipynb"],
        }
        resp = client.post("/scheduler/jobs", body)
        return str(resp.json()["job_id"]), resp.seconds

    def status(self, client: Client, job_id: str) -> str:
        # A new job reads STOPPED (the ORM default) until its spawned process starts: that is
        # not "finished". Only COMPLETED is.
        state = client.get(f"/scheduler/jobs/{job_id}").json()["status"]
        if state == "COMPLETED":
            return "finished"
        if state == "FAILED":
            return "failed"
        return "waiting"

    def list_first_page(self, client: Client, page: int) -> float:
        resp = client.get(f"/scheduler/jobs?max_items={page}&sort_by=desc(create_time)")
        return resp.seconds

    def phases(self, client: Client, job_id: str, posted: float) -> tuple[float, float]:
        job = client.get(f"/scheduler/jobs/{job_id}").json()
        return job["start_time"] / 1000 - posted, (job["end_time"] - job["start_time"]) / 1000


def _p50_ms(values: list[float]) -> float | None:
    return ms(p50(values)) if values else None


def _spread(by_side: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{name} p10 {ms(percentile(values, 10)):.1f} / p90 {ms(percentile(values, 90)):.1f} ms"
        for name, values in by_side.items()
        if values
    )


@dataclass
class EndToEnd:
    seconds: float  # POST → the job reads finished
    to_start: float  # POST → the work started (server's timestamp)
    running: float  # the work's own run time (server's timestamps)

    @property
    def to_seen(self) -> float:
        """The work ended → the client read it finished (poll every 20 ms included)."""
        return self.seconds - self.to_start - self.running


def end_to_end(api: JobAPI, client: Client, timeout: float = 180.0) -> EndToEnd:
    """POST → the job reads finished."""
    posted = time.time()
    start = time.perf_counter()
    job_id, _ = api.create(client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.status(client, job_id)
        if state == "finished":
            seconds = time.perf_counter() - start
            return EndToEnd(seconds, *api.phases(client, job_id, posted))
        if state == "failed":
            raise RuntimeError(f"{api.name}: hello job {job_id} failed")
        time.sleep(POLL)
    raise TimeoutError(f"{api.name}: hello job {job_id} not finished in {timeout:.0f} s")


def wait_all(api: JobAPI, client: Client, job_ids: list[str], timeout: float) -> int:
    """Wait (bounded) until every job has ended; returns how many finished well."""
    pending = set(job_ids)
    good = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            state = api.status(client, job_id)
            if state != "waiting":
                pending.discard(job_id)
                good += state == "finished"
        if pending:
            time.sleep(0.5)
    if pending:
        log(f"{api.name}: {len(pending)} jobs still running after {timeout:.0f} s")
    return good


def run(
    report: Report, ours: Server | None, peer: Server, reps: int, creates: int, lists: int
) -> None:
    """`ours` is None while our server cannot start yet: the peer's figures are still taken."""
    pairs: list[tuple[JobAPI, Client]] = []
    peer_api = Peer()
    peer_client = peer.client()
    peer_api.setup(peer_client)
    pairs.append((peer_api, peer_client))
    write_notebook(peer.root)
    if ours is not None:
        pairs.append((Ours(), ours.client()))
        write_notebook(ours.root)

    report.notes.append(
        "compare: both servers up at once, each in its own temp root; workloads alternate; "
        "'to start' is each server's own start mark (ours: the job's process spawned; the "
        "peer: its spawned process set IN_PROGRESS, after its imports)"
    )
    # Warm-up: one job each (first imports, first kernel spec lookup), not counted.
    for api, client in pairs:
        try:
            end_to_end(api, client)
        except (RuntimeError, TimeoutError) as exc:
            log(f"warm-up: {exc}")

    # End-to-end, alternating.
    e2e: dict[str, list[EndToEnd]] = {"ours": [], "peer": []}
    for rep in range(reps):
        for api, client in pairs:
            run = end_to_end(api, client)
            e2e[api.name].append(run)
            log(
                f"end-to-end {api.name} #{rep + 1}: {run.seconds:.2f} s (to start "
                f"{run.to_start:.2f} s, running {run.running:.2f} s, to seen {run.to_seen:.2f} s)"
            )
    phases = "; ".join(
        f"{name}: to start {ms(p50([r.to_start for r in runs])):.0f}, "
        f"running {ms(p50([r.running for r in runs])):.0f}, "
        f"end→seen {ms(p50([r.to_seen for r in runs])):.0f} ms"
        for name, runs in e2e.items()
        if runs
    )
    report.ratio_row(
        SECTION,
        f"end-to-end, one-cell notebook (median of {reps})",
        _p50_ms([r.seconds for r in e2e["ours"]]),
        _p50_ms([r.seconds for r in e2e["peer"]]),
        0.35,
        note=f"POST → job reads finished (peer: COMPLETED); medians: {phases}",
    )

    # Create latency: `creates` sequential POSTs each; then wait for the jobs to end before the
    # other side's turn, so one side's running jobs do not load the other's measurement.
    created: dict[str, list[float]] = {"ours": [], "peer": []}
    for api, client in pairs:
        ids = []
        for _ in range(creates):
            job_id, seconds = api.create(client)
            ids.append(job_id)
            created[api.name].append(seconds)
        log(f"create {api.name}: p50 {ms(p50(created[api.name])):.1f} ms; waiting for the jobs")
        good = wait_all(api, client, ids, timeout=300.0)
        log(f"create {api.name}: {good}/{creates} finished well")
    report.ratio_row(
        SECTION,
        f"create latency p50 ({creates} POSTs, job accepted)",
        _p50_ms(created["ours"]),
        _p50_ms(created["peer"]),
        0.2,
        note=_spread(created),
    )

    # List latency: both hold the same number of jobs now (warm-up + e2e + creates).
    stored = 1 + reps + creates
    page = 25  # jupyter-scheduler's UI page size; the same page for both
    listed: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(lists):
        for api, client in pairs:
            listed[api.name].append(api.list_first_page(client, page))
    report.ratio_row(
        SECTION,
        f"list latency p50 (first page of {page}, {stored} stored jobs, {lists} GETs)",
        _p50_ms(listed["ours"]),
        _p50_ms(listed["peer"]),
        0.2,
        note=_spread(listed),
    )
    for _, client in pairs:
        client.close()
