"""The monitor: one loop for every job, outcomes from exit code files and instance state,
bounded AWS calls per cycle, backoff on throttling.

moto lacks ListCommandInvocations and DescribeInstanceInformation; the backend uses neither
(command status comes from GetCommandInvocation, which moto serves and these tests edit
in-process; the launch retries SendCommand on InvalidInstanceId instead of polling the agent).
SSM is asked first about a job whose command has ended without an exit code or should have
(its instance is gone, or the command is past its execution timeout); with the budget left,
about one running command, the one asked longest ago.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job, set_state

from awsjobs_lab.aws import clients as clients_mod
from awsjobs_lab.models import JobState


async def _launched(make_backend: Any, root: Any, **traits: Any) -> tuple[Any, Any]:
    backend = make_backend(**traits)
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    return backend, job


async def _state(aws: Any, iid: str) -> str:
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(InstanceIds=[iid])
    return str(resp["Reservations"][0]["Instances"][0]["State"]["Name"])


def _exit(backend: Any, job: Any, code: int) -> None:
    path = backend.job_state_dir(job) / "exit_code"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{code}\n")


async def _waiting(backend: Any, job: Any) -> asyncio.Task[Any]:
    """backend.wait(job) as a task, registered with the monitor when this returns."""
    task = asyncio.ensure_future(backend.wait(job))
    await asyncio.sleep(0)
    assert job.id in backend.monitor.watches
    return task


async def _cycle_until_done(backend: Any, waiter: asyncio.Task[Any], cycles: int = 3) -> Any:
    for _ in range(cycles):
        await backend.monitor.run_cycle()
        await asyncio.sleep(0)
        if waiter.done():
            return waiter.result()
    raise AssertionError("the job did not end")


@pytest.mark.parametrize(("code", "state"), [(0, JobState.SUCCEEDED), (3, JobState.FAILED)])
async def test_exit_code_file_decides_and_instance_is_terminated(
    make_backend, root, aws, code, state
):
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    await backend.monitor.run_cycle()
    assert not waiter.done()  # running, no exit code yet
    _exit(backend, job, code)
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is state
    assert outcome.exit_code == code
    if code:
        assert outcome.error == "exited with code 3"
    # Terminated and confirmed before the outcome was handed back.
    assert await _state(aws, job.handle["instance_id"]) in ("shutting-down", "terminated")


async def test_spot_interruption(make_backend, root, sim):
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    set_state(sim, job.handle["instance_id"], "Server.SpotInstanceTermination")
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.INTERRUPTED
    assert "Server.SpotInstanceTermination" in outcome.error


async def test_terminated_from_outside_fails_with_the_reason(make_backend, root, aws):
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    ec2 = await aws("ec2")
    await ec2.terminate_instances(InstanceIds=[job.handle["instance_id"]])
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.FAILED
    assert "Client.UserInitiatedShutdown" in outcome.error
    assert outcome.exit_code is None


async def test_self_shutdown_at_the_deadline_is_timed_out(make_backend, root, sim):
    backend = make_backend()
    job = make_job(root, max_lifetime_minutes=1)  # deadline within the slack of "now"
    await backend.launch(job, Recorder(job))
    waiter = await _waiting(backend, job)
    set_state(sim, job.handle["instance_id"], "Client.InstanceInitiatedShutdown")
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.TIMED_OUT
    assert "max lifetime" in outcome.error


async def test_self_shutdown_long_before_the_deadline_is_a_failure(make_backend, root, sim):
    backend, job = await _launched(make_backend, root)  # 60 minutes
    waiter = await _waiting(backend, job)
    set_state(sim, job.handle["instance_id"], "Client.InstanceInitiatedShutdown")
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.FAILED
    assert "shut itself down" in outcome.error


async def test_exit_code_grace_lets_a_late_file_win(make_backend, root, sim):
    # The server's NFS client may see the exit file late: an ended instance waits for it.
    backend, job = await _launched(make_backend, root, exit_code_grace_seconds=3600)
    waiter = await _waiting(backend, job)
    set_state(sim, job.handle["instance_id"], "Client.InstanceInitiatedShutdown")
    await backend.monitor.run_cycle()
    await asyncio.sleep(0)
    assert not waiter.done()
    _exit(backend, job, 0)
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.SUCCEEDED


async def test_missing_instance_fails_after_its_grace(make_backend, root):
    backend = make_backend()
    job = make_job(root, state=JobState.RUNNING, started_at=1.0)
    job.handle["instance_id"] = "i-0123456789abcdef0"  # never existed
    backend.monitor.consistency_window = 0
    waiter = await _waiting(backend, job)
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.FAILED
    assert "no longer exists" in outcome.error


def _set_invocation(sim: Any, job: Any, details: str, code: int = -1, stderr: str = "") -> None:
    """The job's command invocation ends (or shows) as SSM says, with AWS's StatusDetails."""
    command_id, iid = job.handle["command_id"], job.handle["instance_id"]
    sim.force_invocation(command_id, iid, details, code)
    if stderr:
        with sim.simulator.lock:
            sim.simulator.world.agent.find(command_id, iid).fields["StandardErrorContent"] = stderr


async def test_command_failed_before_the_script_ran(make_backend, root, aws, sim):
    # No exit code file: the command's script failed before running the job (EFS not
    # mounted: exit 97) and halted the instance, as `aws.command` does. The monitor sees the
    # instance gone without an exit code, asks SSM (GetCommandInvocation) and says why.
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    await backend.monitor.run_cycle()
    assert not waiter.done()
    _set_invocation(
        sim, job, "Failed", 97, stderr="could not mount EFS fs-0123456789abcdef0 at /home"
    )
    set_state(sim, job.handle["instance_id"], "Client.InstanceInitiatedShutdown")
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.FAILED
    assert "shut itself down" in outcome.error
    assert "could not mount EFS" in outcome.error and "code 97" in outcome.error
    assert await _state(aws, job.handle["instance_id"]) in ("shutting-down", "terminated")


async def test_a_running_job_costs_no_ssm_call_until_its_check_is_due(make_backend, root, sim):
    # Within its command's execution timeout and its check interval (the fixture's: an hour),
    # a job without an exit code is not asked about: its instance and exit file tell all.
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    ssm_calls: list[str] = []
    (await backend.clients.ssm()).meta.events.register(
        "before-call", lambda event_name, **_: ssm_calls.append(event_name)
    )
    _set_invocation(sim, job, "Failed", 1)
    for _ in range(3):
        await backend.monitor.run_cycle()
    await asyncio.sleep(0)
    assert not waiter.done()
    assert ssm_calls == []
    waiter.cancel()


@pytest.mark.parametrize(
    ("details", "words"),
    [
        ("Cancelled", "cancelled outside awsjobs"),
        # SSM gave up delivering it (agent offline past TimeoutSeconds): Status TimedOut,
        # StatusDetails "Delivery Timed Out". The job never ran: a failure that says so.
        ("Delivery Timed Out", "never delivered"),
    ],
)
async def test_a_command_ended_outside_the_script_is_found_while_its_instance_runs(
    make_backend, root, sim, aws, details, words
):
    # The command died (cancelled from the console, never delivered, agent gone) without an
    # exit code and the instance did not halt: a spare check (leftover budget, this job due)
    # finds it, and the instance is terminated instead of billing until the lifetime deadline.
    backend, job = await _launched(make_backend, root, command_check_interval_seconds=0)
    waiter = await _waiting(backend, job)
    _set_invocation(sim, job, details)
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.FAILED
    assert words in outcome.error and "execution timeout" not in outcome.error
    assert await _state(aws, job.handle["instance_id"]) in ("shutting-down", "terminated")


async def test_command_past_its_execution_timeout_is_timed_out(make_backend, root, sim, aws):
    # SSM killed the script at its executionTimeout (no exit code) and the instance did not
    # halt itself: once the command should have ended, the monitor asks SSM and rules.
    backend, job = await _launched(make_backend, root, command_check_interval_seconds=0)
    waiter = await _waiting(backend, job)
    backend.monitor.watches[job.id].lifetime_seconds = 0.0  # the command's timeout has passed
    _set_invocation(sim, job, "Execution Timed Out")  # AWS's StatusDetails, with spaces
    outcome = await _cycle_until_done(backend, waiter)
    assert outcome.state is JobState.TIMED_OUT
    assert "execution timeout" in outcome.error
    assert await _state(aws, job.handle["instance_id"]) in ("shutting-down", "terminated")


async def test_command_still_running_keeps_the_job_running(make_backend, root, sim):
    # Past its timeout (as the monitor reckons it) but SSM says it still runs: keep waiting.
    backend, job = await _launched(make_backend, root, command_check_interval_seconds=0)
    waiter = await _waiting(backend, job)
    backend.monitor.watches[job.id].lifetime_seconds = 0.0
    _set_invocation(sim, job, "InProgress")
    for _ in range(2):
        await backend.monitor.run_cycle()
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert job.id not in backend.monitor.watches  # a cancelled wait unregisters


# -- bounded calls per cycle -------------------------------------------------------------------


async def _watch_many(backend: Any, root: Any, aws: Any, n: int) -> list[Any]:
    """n running jobs, launched in one RunInstances call (the monitor is what is tested)."""
    ec2 = await aws("ec2")
    jobs = [make_job(root, f"job{i}.py", state=JobState.RUNNING) for i in range(n)]
    tags = [
        {"Key": "awsjobs:managed", "Value": "true"},
        {"Key": "awsjobs:owner", "Value": "tester"},
    ]
    resp = await ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=n,
        MaxCount=n,
        InstanceType="m7i.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    for job, inst in zip(jobs, resp["Instances"], strict=True):
        # A command id of SSM's shape (a UUID): botocore refuses others before sending them,
        # and such a refused call would never be counted.
        job.handle.update(instance_id=inst["InstanceId"], command_id=str(uuid.uuid4()))
        job.started_at = inst["LaunchTime"].timestamp()
    return jobs


@pytest.mark.parametrize("n", [1, 50, 500])
async def test_aws_calls_per_cycle_do_not_grow_with_jobs(make_backend, root, aws, n):
    # Per-job check interval 0: any per-job SSM polling would show at once.
    backend = make_backend(command_check_interval_seconds=0)
    jobs = await _watch_many(backend, root, aws, n)
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1

    # Counted at the client boundary: every API call the monitor makes, retries excluded.
    for client in (await backend.clients.ec2(), await backend.clients.ssm()):
        client.meta.events.register("before-call", count)
    waiters = [asyncio.ensure_future(backend.wait(j)) for j in jobs]
    await asyncio.sleep(0)  # each wait() registers with the monitor
    assert len(backend.monitor.watches) == n
    futures = [backend.monitor.watches[j.id].future for j in jobs]

    for _ in range(2):  # all running: one DescribeInstances and one spare command check
        calls.clear()
        await backend.monitor.run_cycle()
        assert dict(calls) == {"ec2.DescribeInstances": 1, "ssm.GetCommandInvocation": 1}

    # Half end with an exit code (instances to terminate), half are terminated from outside
    # without one (SSM asked about one of them, within the budget; the others ruled as is).
    calls.clear()
    finished, killed = jobs[n // 2 :], jobs[: n // 2]
    for job in finished:
        _exit(backend, job, 0)
    if killed:
        ec2 = await aws("ec2")
        await ec2.terminate_instances(InstanceIds=[j.handle["instance_id"] for j in killed])
    await backend.monitor.run_cycle()
    expected = {"ec2.DescribeInstances": 1, "ec2.TerminateInstances": 1}
    if killed:
        expected["ssm.GetCommandInvocation"] = 1
    assert dict(calls) == expected
    assert sum(calls.values()) <= 4
    assert all(future.done() for future in futures)  # resolved in that one cycle
    outcomes = await asyncio.gather(*waiters)  # already resolved: returns at once
    assert [o.state for o in outcomes] == [JobState.FAILED] * len(killed) + [
        JobState.SUCCEEDED
    ] * len(finished)


# -- throttling --------------------------------------------------------------------------------


async def test_throttling_is_retried_by_botocore(make_backend, root, faults, no_retry_delay):
    backend, job = await _launched(make_backend, root)
    waiter = await _waiting(backend, job)
    faults.add("ec2", "DescribeInstances", "RequestLimitExceeded", times=2)
    before = faults.calls.get(("ec2", "DescribeInstances"), 0)
    assert await backend.monitor.run_cycle() is True
    assert faults.calls[("ec2", "DescribeInstances")] - before == 3
    waiter.cancel()


async def test_monitor_backs_off_exponentially_while_throttled(
    make_backend, root, faults, no_retry_delay, monkeypatch
):
    backend, job = await _launched(make_backend, root)
    monitor = backend.monitor
    monitor.interval = 1.0
    monitor.max_backoff = 6.0
    # Jitter pinned to its upper bound so the delays are exact.
    monkeypatch.setattr(clients_mod.random, "uniform", lambda lo, hi: hi)
    # Four attempts per call (standard mode): 4 whole cycles throttled, then AWS answers.
    faults.add("ec2", "DescribeInstances", "RequestLimitExceeded", times=4 * 4)
    _exit(backend, job, 0)
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    monitor.sleep = fake_sleep
    await backend.start()  # the loop
    outcome = await backend.wait(job)  # resolves after the throttling
    assert outcome.state is JobState.SUCCEEDED
    assert monitor.stats.throttled_cycles == 4
    assert delays[:4] == [2.0, 4.0, 6.0, 6.0]  # doubling, capped at max_backoff
