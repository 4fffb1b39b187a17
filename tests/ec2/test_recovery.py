"""Recovery from spot interruptions, on the simulated AWS with its worker running the real boot
script and command text (tests/awssim/README.md), driven by the real JobService and store.

- interrupted twice with `on_interruption: "retry"` (the default): the job finishes on its third
  attempt, on on-demand, with one job id, a continuous log with a marker per attempt, the
  attempts listed and their costs summed; every instance of it terminated;
- `on_interruption: "fail"`: `interrupted` at once, nothing relaunched;
- a Stop while the job is relaunching: `stopped`, no instance left;
- a relaunch that cannot launch (no capacity in any pool): `interrupted`, its error says why
  the new attempt failed, no instance left;
- the spot notice on the worker: the simulator writes the notice to the sandbox, not to an
  instance metadata service, so a fake IMDSv2 on 127.0.0.1 serves it here (the command text
  takes its URL from the worker's environment, `AWSJOBS_IMDS_URL`): the job gets SIGTERM and
  the log records the notice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job, set_state

from awsjobs_lab.aws import tags
from awsjobs_lab.backends.ec2 import EC2Backend
from awsjobs_lab.models import Job, JobState
from awsjobs_lab.requests import LaunchDefaults
from awsjobs_lab.service import JobService, ServiceOptions
from awsjobs_lab.store import JobStore
from tests.awssim.server import SimulatedAWS

WORKER_CLOCK = {
    "boot_seconds": 0.05,
    "agent_register_seconds": 0.05,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.05,
    "spot_notice_seconds": 0.2,
}
# Prints its attempt; the third finishes, the others run until their instance is reclaimed.
TRAIN = """import os, sys, time
attempt = os.environ["AWSJOBS_ATTEMPT"]
print(f"attempt {attempt} starts", flush=True)
if attempt == "3":
    print("finished", flush=True)
    sys.exit(0)
time.sleep(120)
"""


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    """The simulator's worker on: boot scripts and commands really run, `root` is the EFS."""
    sim.configure({"clock": WORKER_CLOCK, "worker": {"enabled": True, "efs_root": str(root)}})
    return sim


@pytest.fixture
def spot_prices(seed_spot: dict[tuple[str, str], str]) -> None:
    seed_spot[("c7i.large", "us-east-1a")] = "0.0300"
    seed_spot[("c7i.large", "us-east-1b")] = "0.0210"


@pytest.fixture
async def service(
    worker: SimulatedAWS,
    spot_prices: None,
    make_backend: Callable[..., EC2Backend],
    root: Path,
    tmp_path: Path,
) -> AsyncIterator[JobService]:
    (root / "work" / "train.py").write_text(TRAIN)
    made = JobService(
        JobStore(tmp_path / "jobs.sqlite"),
        {"ec2": make_backend(launch_timeout_seconds=20.0)},
        root,
        ServiceOptions(
            defaults=LaunchDefaults(backend="ec2"), retry_seconds=0.01, retry_max_seconds=0.05
        ),
    )
    await made.start()
    yield made
    await made.close()


def _backend(service: JobService) -> EC2Backend:
    backend = service.backends["ec2"]
    assert isinstance(backend, EC2Backend)
    return backend


async def _until(service: JobService, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    """Run monitor cycles until `check(job)` holds (no timed assertion: many short turns)."""
    for _ in range(1500):
        await _backend(service).monitor.run_cycle()
        job = await service.get_job(job_id)
        if check(job):
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}; the job: {job.to_dict()}")


def _log(root: Path, job: Job) -> str:
    path = root / job.log_path
    return path.read_text() if path.exists() else ""


async def _running_attempt(service: JobService, root: Path, job_id: str, number: int) -> Job:
    """The job running its `number`-th attempt, its script started (the log says so)."""
    return await _until(
        service,
        job_id,
        lambda j: (
            j.state is JobState.RUNNING
            and len(j.attempts) == number
            and f"attempt {number} starts" in _log(root, j)
        ),
        f"attempt {number} to run",
    )


async def _states(aws: Any, ids: list[str]) -> dict[str, str]:
    ec2 = await aws("ec2")
    found = await ec2.describe_instances(InstanceIds=ids)
    return {
        i["InstanceId"]: i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]
    }


async def _tags(aws: Any, iid: str) -> dict[str, str]:
    ec2 = await aws("ec2")
    found = await ec2.describe_instances(InstanceIds=[iid])
    instance = found["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


async def test_interrupted_twice_finishes_on_its_third_attempt(service, worker, root, aws):
    job = await service.create_job({"path": "work/train.py", "spot": True})
    assert (job.on_interruption, job.max_attempts) == ("retry", 3)
    first = await _running_attempt(service, root, job.id, 1)
    worker.interrupt_spot(first.attempts[0].instance_id)
    second = await _running_attempt(service, root, job.id, 2)
    worker.interrupt_spot(second.attempts[1].instance_id)
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")

    assert done.state is JobState.SUCCEEDED and done.id == job.id and done.exit_code == 0
    a1, a2, a3 = done.attempts
    assert [a.number for a in done.attempts] == [1, 2, 3]
    assert [a.spot for a in done.attempts] == [True, True, False]  # the last on on-demand
    assert [a.outcome for a in done.attempts] == ["interrupted", "interrupted", "succeeded"]
    ids = [a.instance_id for a in done.attempts]
    assert len(set(ids)) == 3 and all(ids)
    for a in done.attempts:
        assert a.instance_type and a.availability_zone and a.hourly_price
        assert a.started_at and a.ended_at and a.started_at <= a.ended_at
        assert a.cost is not None
    assert a1.ended_at <= a2.started_at and a2.ended_at <= a3.started_at
    assert done.cost_so_far() == pytest.approx(sum(a.cost or 0.0 for a in done.attempts))
    assert done.started_at == a1.started_at  # the lifetime counts from the first attempt
    # The history: running → launching for each relaunch, with the reason.
    states = [t.state.value for t in done.moves]
    assert states == ["pending", "launching", "running"] * 1 + [
        "launching",
        "running",
        "launching",
        "running",
        "succeeded",
    ]
    relaunches = [t.reason or "" for t in done.moves if t.state is JobState.LAUNCHING][1:]
    assert relaunches[0].startswith("attempt 2 of 3 (spot interrupted, now spot)")
    assert relaunches[1].startswith("attempt 3 of 3 (spot interrupted, now on-demand)")
    assert "Server.SpotInstanceTermination" in relaunches[0]
    # One continuous log: each attempt's output after its marker.
    log = _log(root, done)
    order = [
        "attempt 1 starts",
        "--- awsjobs: attempt 2 of 3 (spot interrupted, now spot) ---",
        "attempt 2 starts",
        "--- awsjobs: attempt 3 of 3 (spot interrupted, now on-demand) ---",
        "attempt 3 starts",
        "finished",
    ]
    positions = [log.index(text) for text in order]
    assert positions == sorted(positions)
    # Every instance is gone, each tagged with the job and its attempt; the markets as asked.
    states_now = await _states(aws, ids)
    assert set(states_now.values()) <= {"shutting-down", "terminated"}
    for number, iid in enumerate(ids, start=1):
        found = await _tags(aws, iid)
        assert found[tags.JOB_ID] == job.id and found[tags.ATTEMPT] == str(number)
    launched = {i["instance_id"]: i for i in worker.record.to_json()["instances"]}
    assert [launched[i]["market"] for i in ids] == ["spot", "spot", "on-demand"]
    # The JSON carries the attempts.
    served = done.to_dict()
    assert [a["outcome"] for a in served["attempts"]] == ["interrupted", "interrupted", "succeeded"]
    assert set(served["attempts"][0]) >= {
        "instance_id",
        "instance_type",
        "spot",
        "availability_zone",
        "started_at",
        "ended_at",
        "outcome",
        "cost",
    }


async def test_on_interruption_fail_reads_interrupted_at_once(service, worker, root, aws):
    job = await service.create_job(
        {"path": "work/train.py", "spot": True, "on_interruption": "fail"}
    )
    first = await _running_attempt(service, root, job.id, 1)
    worker.interrupt_spot(first.attempts[0].instance_id)
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.INTERRUPTED
    assert len(done.attempts) == 1 and done.attempts[0].outcome == "interrupted"
    assert 'on_interruption is "fail"' in (done.error or "")
    assert [t.state.value for t in done.moves] == [
        "pending",
        "launching",
        "running",
        "interrupted",
    ]
    assert len(worker.record.to_json()["instances"]) == 1  # nothing relaunched


async def test_the_last_attempt_interrupted_reads_interrupted(service, worker, root):
    job = await service.create_job(
        {"path": "work/train.py", "spot": True, "on_interruption": "retry", "max_attempts": 1}
    )
    first = await _running_attempt(service, root, job.id, 1)
    worker.interrupt_spot(first.attempts[0].instance_id)
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.INTERRUPTED
    assert "attempt 1 of 1: no attempt left" in (done.error or "")


async def test_stop_during_a_relaunch_stops_everything(service, worker, root, aws):
    job = await service.create_job({"path": "work/train.py", "spot": True})
    first = await _running_attempt(service, root, job.id, 1)
    # The relaunch's instance does not boot within the test: the Stop arrives while the job is
    # launching again (a boot of a second could end before a loaded machine looks).
    worker.configure({"clock": {"boot_seconds": 600}})
    worker.interrupt_spot(first.attempts[0].instance_id)
    relaunching = await _until(
        service,
        job.id,
        lambda j: j.state is JobState.LAUNCHING and len(j.attempts) == 2,
        "the relaunch",
    )
    assert relaunching.attempts[0].outcome == "interrupted"
    await service.stop_job(job.id)
    stopped = await _until(service, job.id, lambda j: not j.is_active, "the stop")
    assert stopped.state is JobState.STOPPED
    assert [a.outcome for a in stopped.attempts] == ["interrupted", "stopped"]
    ids = [i["instance_id"] for i in worker.record.to_json()["instances"]]
    assert ids and set((await _states(aws, ids)).values()) <= {"shutting-down", "terminated"}


async def test_a_relaunch_that_cannot_launch_reads_interrupted(service, worker, root, aws):
    job = await service.create_job({"path": "work/train.py", "spot": True})
    first = await _running_attempt(service, root, job.id, 1)
    # No capacity anywhere for the next attempt: every pool refuses it.
    worker.configure({"capacity": {"rules": [{"error": "InsufficientInstanceCapacity"}]}})
    worker.interrupt_spot(first.attempts[0].instance_id)
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")

    assert done.state is JobState.INTERRUPTED, done.error
    error = done.error or ""
    assert error.startswith("spot interrupted; attempt 2 of 3 could not launch: "), error
    assert "InsufficientInstanceCapacity" in error or "no capacity" in error
    assert [a.outcome for a in done.attempts] == ["interrupted", "failed"]
    assert done.attempts[1].instance_id is None
    assert [t.state.value for t in done.moves][-2:] == ["launching", "interrupted"]
    # Nothing leaks: the first instance is gone and no other was launched.
    ids = [i["instance_id"] for i in worker.record.to_json()["instances"]]
    assert ids == [first.attempts[0].instance_id]
    assert set((await _states(aws, ids)).values()) <= {"shutting-down", "terminated"}


class _FakeIMDS(BaseHTTPRequestHandler):
    """IMDSv2 as far as the watcher uses it: a token, then `spot/instance-action` (404 until
    a notice is set)."""

    notice: str | None = None

    def do_PUT(self) -> None:
        self._answer(200, "token-1")

    def do_GET(self) -> None:
        ok = self.headers.get("X-aws-ec2-metadata-token") == "token-1"
        if not ok:
            self._answer(401, "")
        elif self.path.endswith("/meta-data/spot/instance-action") and _FakeIMDS.notice:
            self._answer(200, _FakeIMDS.notice)
        else:
            self._answer(404, "")

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FakeIMDS]]:
    """A fake instance metadata service on 127.0.0.1, named in the workers' environment."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeIMDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWSJOBS_IMDS_URL", f"http://127.0.0.1:{server.server_port}/latest")
    monkeypatch.setenv("AWSJOBS_SPOT_POLL_SECONDS", "0.1")
    _FakeIMDS.notice = None
    yield _FakeIMDS
    _FakeIMDS.notice = None
    server.shutdown()
    server.server_close()


CHECKPOINTER = """import os, signal, sys, time
def checkpoint(signum, frame):
    print(f"SIGTERM on attempt {os.environ['AWSJOBS_ATTEMPT']}: checkpointing", flush=True)
    sys.exit(1)
signal.signal(signal.SIGTERM, checkpoint)
print(f"attempt {os.environ['AWSJOBS_ATTEMPT']} starts", flush=True)
if os.environ["AWSJOBS_ATTEMPT"] == "2":
    sys.exit(0)
time.sleep(120)
"""


async def test_the_spot_notice_sends_sigterm_and_is_logged(imds, service, worker, root):
    (root / "work" / "train.py").write_text(CHECKPOINTER)
    # The notice comes well ahead of the reclamation, as on AWS (two minutes there): here AWS
    # reclaims the instance once the job has answered the notice (set_state), not after a
    # delay a loaded machine could outlast before the worker has seen the notice.
    worker.configure({"clock": {"spot_notice_seconds": 600}})
    job = await service.create_job({"path": "work/train.py", "spot": True, "max_attempts": 2})
    first = await _running_attempt(service, root, job.id, 1)
    imds.notice = '{"action": "terminate", "time": "2026-11-30T12:00:00Z"}'
    worker.interrupt_spot(first.attempts[0].instance_id)
    noticed = await _until(
        service, job.id, lambda j: "not recorded" in _log(root, j), "the job to end on SIGTERM"
    )
    log = _log(root, noticed)
    assert "[awsjobs] spot interruption notice at" in log and '"action": "terminate"' in log
    assert "SIGTERM on attempt 1: checkpointing" in log
    assert "not recorded; this attempt ends when AWS reclaims the instance" in log
    assert noticed.state is JobState.RUNNING  # no exit code recorded: not `failed`
    set_state(worker, first.attempts[0].instance_id, "Server.SpotInstanceTermination")
    imds.notice = None
    done = await _until(service, job.id, lambda j: not j.is_active, "the job to end")
    assert done.state is JobState.SUCCEEDED
    assert [a.outcome for a in done.attempts] == ["interrupted", "succeeded"]
    assert [a.spot for a in done.attempts] == [True, False]


async def test_after_a_restart_a_relaunch_is_not_taken_for_its_earlier_attempt(
    sim, make_backend, root
):
    # The first attempt's instance is gone; the server stopped before the second attempt's
    # launch recorded anything: the old instance must not be re-attached as if it were it.
    backend = make_backend()
    job = make_job(root, spot=False)
    job.open_attempt(False)
    await backend.launch(job, Recorder(job))
    old = job.handle["instance_id"]
    sim.terminate(old)
    job.end_attempt("interrupted", job.started_at or 0.0)
    job.open_attempt(False)
    job.handle = {"attempt": 2}
    outcome = await backend.reattach(job)
    assert outcome is not None and outcome.state is JobState.FAILED
    assert outcome.error == "the server stopped before an instance was launched"
    assert old not in (outcome.error or "")
