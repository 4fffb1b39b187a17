"""EC2's eventual consistency: right after RunInstances, the id it returned may answer
`InvalidInstanceID.NotFound` and be missing from DescribeInstances for a while. For such an id
NotFound means *unknown*, never *gone*: a termination is confirmed only once EC2 shows the
instance shutting down or terminated, or once the consistency window is over."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.aws import instances
from awsjobs_lab.errors import BackendError
from awsjobs_lab.models import JobState

GONE = ("shutting-down", "terminated")
HIDDEN_SECONDS = 1.0  # how long EC2 does not know a new instance, in these tests
# For a test that must see an instance still hidden: a window no loaded machine outruns,
# ended by hand (sim.settle).
UNTIL_SETTLED = 600.0


def hidden_for(seconds: float = HIDDEN_SECONDS) -> dict[str, Any]:
    return {
        "consistency": {"instance_not_found_seconds": seconds, "instance_unlisted_seconds": seconds}
    }


def machine_state(sim: Any, iid: str) -> str:
    return str(sim.simulator.machine(iid).state)


async def _launched_unseen(
    make_backend: Any, root: Any, sim: Any, seconds: float = HIDDEN_SECONDS
) -> tuple[Any, Any]:
    """A job launched while EC2 does not know new instances for `seconds`."""
    backend = make_backend(consistency_window_seconds=30)
    sim.configure(hidden_for(seconds))
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    return backend, job


async def _stop_as_the_service_does(backend: Any, job: Any, tries: int = 200) -> None:
    """backend.stop, retried on BackendError (what the job service does)."""
    for _ in range(tries):
        try:
            await backend.stop(job)
            return
        except BackendError:
            await asyncio.sleep(0.05)
    raise AssertionError("the stop was never confirmed")


async def test_terminate_and_check_never_takes_a_new_unknown_id_for_gone(sim, aws):
    # The helper the backend and the image builder share.
    sim.configure(hidden_for(UNTIL_SETTLED))
    ec2 = await aws("ec2")
    made = await ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    iid = made["Instances"][0]["InstanceId"]
    left = await instances.terminate_and_check(ec2, [iid], attempts=1)
    assert left == {iid: "unknown"}
    assert machine_state(sim, iid) == "running"
    # Retried, it is confirmed once EC2 knows the id (now), and really terminated.
    sim.settle(iid)
    left = await instances.terminate_and_check(ec2, [iid], attempts=100, delay=0.05)
    assert left == {}
    assert machine_state(sim, iid) in GONE


async def test_an_old_id_ec2_no_longer_knows_is_gone(sim, aws):
    ec2 = await aws("ec2")
    old = {"i-0123456789abcdef0": time.time() - 3600}
    assert await instances.terminate_and_check(ec2, old, launched_at=old, window=300) == {}


async def test_stop_right_after_launch_terminates_an_instance_ec2_does_not_show_yet(
    make_backend, root, sim
):
    backend, job = await _launched_unseen(make_backend, root, sim)
    await _stop_as_the_service_does(backend, job)
    assert machine_state(sim, job.handle["instance_id"]) in GONE


async def test_a_job_that_ends_before_ec2_shows_its_instance_waits_for_its_termination(
    make_backend, root, sim
):
    backend, job = await _launched_unseen(make_backend, root, sim)
    (backend.job_state_dir(job) / "exit_code").write_text("0\n")
    waiter = asyncio.ensure_future(backend.wait(job))
    for _ in range(200):
        await backend.monitor.run_cycle()
        await asyncio.sleep(0.05)
        if waiter.done():
            break
    assert (await waiter).state is JobState.SUCCEEDED
    # Handed back only once AWS confirmed the termination.
    assert machine_state(sim, job.handle["instance_id"]) in GONE


async def test_reattach_right_after_launch_waits_for_ec2_to_show_the_instance(
    make_backend, root, sim
):
    _, job = await _launched_unseen(make_backend, root, sim, UNTIL_SETTLED)
    restarted = make_backend(consistency_window_seconds=30)
    # Not "its instance no longer exists": EC2 has not caught up yet; the service retries.
    with pytest.raises(BackendError, match="not visible"):
        await restarted.reattach(job)
    sim.settle(job.handle["instance_id"])  # EC2 catches up
    assert await restarted.reattach(job) is None  # alive: watched again
    assert machine_state(sim, job.handle["instance_id"]) == "running"


async def test_an_id_unknown_to_a_call_sent_in_the_window_stays_unknown_however_late_the_answer(
    sim, aws, monkeypatch
):
    # TerminateInstances is sent while EC2 may not know the new id, and answered after the
    # window: "not found" then still means unknown, never gone.
    sim.configure(hidden_for(UNTIL_SETTLED))
    ec2 = await aws("ec2")
    launched_at = time.time()
    made = await ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    iid = made["Instances"][0]["InstanceId"]
    window = 1.0
    sent = instances.terminate

    async def answered_after_the_window(client: Any, ids: Any) -> Any:
        answer = await sent(client, ids)
        await asyncio.sleep(max(0.0, launched_at + window + 0.2 - time.time()))
        return answer

    monkeypatch.setattr(instances, "terminate", answered_after_the_window)
    left = await instances.terminate_and_check(
        ec2, [iid], attempts=1, launched_at={iid: launched_at}, window=window
    )
    assert left == {iid: "unknown"}
    assert machine_state(sim, iid) == "running"
