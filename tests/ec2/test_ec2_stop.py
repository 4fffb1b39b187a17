"""Stop in every state (never an orphan), reattach after a restart, orphans, and the
instances list/terminate endpoints' backend methods."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from aiobotocore.stub import AioStubber
from ec2_helpers import Recorder, launch_tagged, make_job, set_state

from awsjobs_lab.errors import BackendError, Forbidden, InvalidRequest
from awsjobs_lab.models import JobState

DONE = ("shutting-down", "terminated")


async def _job_states(aws: Any, job_id: str) -> dict[str, str]:
    """Every instance tagged with this job, and its state."""
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(
        Filters=[{"Name": "tag:awsjobs:job-id", "Values": [job_id]}]
    )
    return {
        i["InstanceId"]: i["State"]["Name"] for r in resp["Reservations"] for i in r["Instances"]
    }


async def _assert_nothing_left(aws: Any, job_id: str) -> None:
    states = await _job_states(aws, job_id)
    assert all(s in DONE for s in states.values()), states


async def test_stop_before_launch(make_backend, root, aws):
    backend = make_backend()
    job = make_job(root)
    await backend.stop(job)  # nothing launched, nothing to do, no error
    await backend.stop(job)
    assert await _job_states(aws, job.id) == {}
    # A launch that starts after the stop does not launch anything.
    with pytest.raises(BackendError):
        await backend.launch(job, Recorder(job))
    assert await _job_states(aws, job.id) == {}


async def test_stop_while_create_fleet_is_in_flight(make_backend, root, aws):
    backend = make_backend()
    ec2 = await backend.clients.ec2()
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def hold(**_: Any) -> None:
        entered.set()
        await gate.wait()  # CreateFleet is sent once the gate opens

    ec2.meta.events.register("before-send.ec2.CreateFleet", hold)
    job = make_job(root)
    launch = asyncio.ensure_future(backend.launch(job, Recorder(job)))
    await entered.wait()
    stop = asyncio.ensure_future(backend.stop(job))
    await asyncio.sleep(0)
    assert not stop.done()  # stop waits for the in-flight CreateFleet to answer
    gate.set()
    await stop
    await launch  # returns quietly: no command is sent to a stopped job
    assert "command_id" not in job.handle
    states = await _job_states(aws, job.id)
    assert len(states) == 1 and all(s in DONE for s in states.values())


async def test_stop_after_run_instances_before_send_command(make_backend, root, aws):
    # The launch is held right after RunInstances returned (inside record), before SendCommand.
    backend = make_backend()
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        held.set()
        await release.wait()

    job = make_job(root)
    launch = asyncio.ensure_future(backend.launch(job, Recorder(job, hold=hold)))
    await held.wait()
    await backend.stop(job)
    await _assert_nothing_left(aws, job.id)
    release.set()
    await launch
    assert "command_id" not in job.handle
    ssm = await aws("ssm")
    sent = await ssm.list_commands(InstanceId=job.handle["instance_id"])
    assert sent["Commands"] == []
    await _assert_nothing_left(aws, job.id)


async def test_stop_a_running_job_cancels_its_command_and_terminates(make_backend, root, aws):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    waiter = asyncio.ensure_future(backend.wait(job))
    await asyncio.sleep(0)
    ssm = await backend.clients.ssm()
    # moto has no CancelCommand: a recorded response at the client boundary stands for SSM.
    with AioStubber(ssm) as stub:
        stub.add_response(
            "cancel_command",
            {},
            {"CommandId": job.handle["command_id"], "InstanceIds": [job.handle["instance_id"]]},
        )
        await backend.stop(job)
        stub.assert_no_pending_responses()
    await _assert_nothing_left(aws, job.id)
    outcome = await waiter  # a pending wait ends as stopped, never as "failed"
    assert outcome.state is JobState.STOPPED


async def test_stop_when_cancel_command_fails_still_terminates(
    make_backend, root, aws, no_retry_delay
):
    # Against moto CancelCommand answers HTTP 500 (not implemented): best effort only.
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    await backend.stop(job)
    await _assert_nothing_left(aws, job.id)


async def test_stop_an_already_stopping_or_terminated_job(make_backend, root, aws, sim):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    job.handle.pop("command_id")  # (skip CancelCommand, covered above)
    sim.configure({"clock": {"shutting_down_seconds": 3600}})  # it stays shutting-down
    sim.terminate(job.handle["instance_id"])
    await backend.stop(job)
    set_state(sim, job.handle["instance_id"], "Client.UserInitiatedShutdown")
    await backend.stop(job)  # idempotent
    await backend.stop(job)
    await _assert_nothing_left(aws, job.id)


async def test_stop_finds_an_unrecorded_instance_by_tag(make_backend, root, aws):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    iid = job.handle["instance_id"]
    job.handle.clear()  # as if the server died before recording it
    await backend.stop(job)
    assert (await _job_states(aws, job.id))[iid] in DONE


async def test_stop_that_cannot_be_confirmed_raises(make_backend, root, aws, faults):
    backend = make_backend(stop_confirm_attempts=2)
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    job.handle.pop("command_id")
    faults.add("ec2", "TerminateInstances", "UnauthorizedOperation")
    with pytest.raises(BackendError, match="UnauthorizedOperation"):
        await backend.stop(job)
    # The service retries; the next attempt succeeds.
    await backend.stop(job)
    await _assert_nothing_left(aws, job.id)


# -- reattach after a restart ------------------------------------------------------------------


async def test_reattach_after_restart(make_backend, root, aws, moto_backend):
    first = make_backend()
    job = make_job(root)
    await first.launch(job, Recorder(job))
    await first.close()

    second = make_backend()  # a new server process, same AWS
    assert await second.reattach(job) is None  # alive: the service calls wait()
    waiter = asyncio.ensure_future(second.wait(job))
    await asyncio.sleep(0)
    exit_file = second.job_state_dir(job) / "exit_code"
    exit_file.write_text("0\n")
    await second.monitor.run_cycle()
    outcome = await waiter
    assert outcome.state is JobState.SUCCEEDED
    await _assert_nothing_left(aws, job.id)


async def test_reattach_rules_on_what_happened_while_away(make_backend, root, sim, aws):
    backend = make_backend()
    spot = make_job(root, "spot.py")
    await backend.launch(spot, Recorder(spot))
    set_state(sim, spot.handle["instance_id"], "Server.SpotInstanceTermination")
    done = make_job(root, "done.py")
    await backend.launch(done, Recorder(done))
    (backend.job_state_dir(done) / "exit_code").write_text("4\n")
    half = make_job(root, "half.py")
    await backend.launch(half, Recorder(half))
    half.handle.pop("command_id")  # the server died between RunInstances and SendCommand
    gone = make_job(root, "gone.py")

    restarted = make_backend()
    outcome = await restarted.reattach(spot)
    assert outcome.state is JobState.INTERRUPTED
    outcome = await restarted.reattach(done)
    assert (outcome.state, outcome.exit_code) == (JobState.FAILED, 4)
    await _assert_nothing_left(aws, done.id)  # its instance was still running: terminated
    outcome = await restarted.reattach(half)
    # moto's ListCommands shows the command was sent after all: the job is adopted...
    assert outcome is None
    # ...while a half-launched job whose command never went out is terminated.
    never = make_job(root, "never.py")
    await launch_tagged(await aws("ec2"), {"awsjobs:managed": "true", "awsjobs:job-id": never.id})
    outcome = await restarted.reattach(never)
    assert outcome.state is JobState.FAILED and "launching" in outcome.error
    await _assert_nothing_left(aws, never.id)
    # Stopped again before that outcome was recorded: the next server finds the instance
    # terminated by the one before. The job never ran; nobody else is blamed for it.
    again = await make_backend().reattach(never)
    assert again.state is JobState.FAILED
    assert "never ran" in again.error and "UserInitiatedShutdown" not in again.error
    outcome = await restarted.reattach(gone)
    assert outcome.state is JobState.FAILED


async def test_reattach_after_ec2_forgot_the_instance_says_the_outcome_is_unknown(
    make_backend, root
):
    # The server was down longer than EC2 lists terminated instances (about an hour): the
    # recorded instance is unknown to EC2 and the job wrote no exit code. Nobody can say how
    # it ended: the job fails with a message that says so, not with a confident reason.
    backend = make_backend()
    long_ago = time.time() - 2 * 3600
    job = make_job(root, state=JobState.RUNNING, created_at=long_ago, started_at=long_ago)
    job.handle.update(instance_id="i-0123456789abcdef0", command_id=str(uuid.uuid4()))
    outcome = await backend.reattach(job)
    assert outcome.state is JobState.FAILED
    assert "i-0123456789abcdef0" in outcome.error and "unknown" in outcome.error


async def test_reattach_looks_again_for_a_just_launched_instance(make_backend, root):
    # Right after a restart EC2 may not list an instance launched just before it yet: the
    # service retries reattach on BackendError until the grace period is over.
    job = make_job(root)
    with pytest.raises(BackendError, match="is visible yet"):
        await make_backend(reattach_grace_seconds=3600).reattach(job)
    outcome = await make_backend(reattach_grace_seconds=0).reattach(job)
    assert outcome.state is JobState.FAILED and "before an instance" in outcome.error


async def test_reattach_raises_backend_error_when_aws_fails(make_backend, root, faults):
    backend = make_backend(stop_confirm_attempts=1)
    job = make_job(root)
    job.handle["instance_id"] = "i-0123456789abcdef0"
    faults.always("ec2", "DescribeInstances", "InternalError")
    with pytest.raises(BackendError):
        await backend.reattach(job)


# -- orphans -----------------------------------------------------------------------------------


async def test_orphans_are_reported_and_terminated_when_configured(make_backend, root, aws):
    backend = make_backend()
    kept, lost = make_job(root, "kept.py"), make_job(root, "lost.py")
    for job in (kept, lost):
        await backend.launch(job, Recorder(job))
    ec2 = await aws("ec2")
    # An image builder (another role) and another owner's job are never our orphans.
    for tags in (
        {"awsjobs:managed": "true", "awsjobs:owner": "tester", "awsjobs:role": "image-builder"},
        {"awsjobs:managed": "true", "awsjobs:owner": "someone-else", "awsjobs:job-id": "x1"},
    ):
        await ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )

    orphans = await backend.find_orphans({kept.id})
    assert [o["job_id"] for o in orphans] == [lost.id]

    report = await backend.reconcile([kept])  # terminate_orphans is off by default
    assert [o["instance_id"] for o in report["orphans"]] == [lost.handle["instance_id"]]
    assert report["terminated"] == []
    assert (await _job_states(aws, lost.id))[lost.handle["instance_id"]] == "running"

    restarted = make_backend(terminate_orphans=True)
    report = await restarted.reconcile([kept.id])
    assert [o["job_id"] for o in report["terminated"]] == [lost.id]
    await _assert_nothing_left(aws, lost.id)
    assert (await _job_states(aws, kept.id))[kept.handle["instance_id"]] == "running"


# -- GET instances / POST instances/stop -------------------------------------------------------


async def test_list_instances(make_backend, root, seed_spot):
    seed_spot[("c7a.large", "us-east-1a")] = "0.0200"
    backend = make_backend()
    job = make_job(root, spot=True)
    await backend.launch(job, Recorder(job))
    (row,) = await backend.list_instances()
    assert row["instance_id"] == job.handle["instance_id"]
    assert row["job_id"] == job.id
    assert row["instance_type"] == "c7a.large"
    assert row["spot"] is True
    assert row["state"] == "running"
    assert row["hourly_price"] == pytest.approx(0.02)
    assert row["cost_so_far"] >= 0
    assert row["availability_zone"] == "us-east-1a"
    assert row["launch_time"] > 0


async def test_terminate_instances_refuses_foreign_ids_and_touches_nothing(make_backend, root, aws):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    ours = job.handle["instance_id"]
    ec2 = await aws("ec2")
    untagged = (await ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1))[
        "Instances"
    ][0]["InstanceId"]
    other = (
        await ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "awsjobs:managed", "Value": "true"},
                        {"Key": "awsjobs:owner", "Value": "someone-else"},
                    ],
                }
            ],
        )
    )["Instances"][0]["InstanceId"]

    for ids in ([ours, untagged], [other, ours], ["i-0123456789abcdef0", ours]):
        with pytest.raises(Forbidden) as err:
            await backend.terminate_instances(ids)
        assert err.value.status == 403
    with pytest.raises(InvalidRequest):
        await backend.terminate_instances(["not-an-id"])
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in (await ec2.describe_instances())["Reservations"]
        for i in r["Instances"]
    }
    assert states == {ours: "running", untagged: "running", other: "running"}

    assert await backend.terminate_instances([ours]) == [ours]
    assert (await _job_states(aws, job.id))[ours] in DONE
