"""CreateFleet whose answer is lost (timeout, connection reset, 5xx after retries): AWS may
have launched the instance. The ClientToken is the same for every try (derived from the job
and the pools offered, recorded before the call), so a retry returns the same instance; if the
launch still fails, the job's tag is swept over the consistency window and whatever it finds
is terminated before the job may read failed. After a restart, a job left launching without
an instance id is looked for by tag over the same window."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from ec2_helpers import Recorder, launch_tagged, make_job

from awsjobs_lab.aws.fleet import fleet_token
from awsjobs_lab.aws.select import Candidate
from awsjobs_lab.errors import BackendError
from awsjobs_lab.models import JobState

GONE = ("shutting-down", "terminated")


def launched_for(sim: Any, job_id: str) -> dict[str, str]:
    """Every instance the simulator ever launched for this job → its state now."""
    machines = sim.simulator.world.fleet.machines
    return {
        iid: m.state for iid, m in machines.items() if m.life.tags.get("awsjobs:job-id") == job_id
    }


def lost_create_fleet(count: int) -> dict[str, Any]:
    """CreateFleet applied, its answer lost `count` times in a row (botocore sees a reset)."""
    return {"faults": [{"service": "ec2", "action": "CreateFleet", "error": "LostAnswer",
                        "count": count}]}  # fmt: skip


async def test_the_attempt_is_recorded_before_create_fleet_with_a_stable_token(make_backend, root):
    backend = make_backend()
    sent: list[dict[str, Any]] = []
    ec2 = await backend.clients.ec2()
    ec2.meta.events.register(
        "provide-client-params.ec2.CreateFleet", lambda params, **_: sent.append(dict(params))
    )
    job = make_job(root)
    rec = Recorder(job)
    await backend.launch(job, rec)
    attempt = rec.calls[0][0]["launch_attempt"]  # recorded before anything else
    (params,) = sent
    assert params["ClientToken"] == attempt["client_token"]
    assert attempt["client_token"].startswith(f"awsjobs-{job.id}-")
    assert len(attempt["client_token"]) <= 64
    assert attempt["instance_type"] == job.instance_type and attempt["at"] > 0
    # The same job and pools give the same token (a retry, a restart); other pools another.
    overrides = params["LaunchTemplateConfigs"][0]["Overrides"]
    same = [
        Candidate(o["InstanceType"], 2, 4.0, None, "", "", o["SubnetId"], False) for o in overrides
    ]
    assert len(same) > 1
    assert fleet_token(job.id, same) == attempt["client_token"]
    assert fleet_token(job.id, same[1:]) != attempt["client_token"]


async def test_lost_answers_past_botocores_retries_are_retried_with_the_same_token(
    make_backend, root, sim
):
    # botocore tries 4 times; every answer is lost. The instance was launched by the first.
    sim.configure(lost_create_fleet(4))
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    assert launched_for(sim, job.id) == {job.handle["instance_id"]: "running"}
    assert sim.record.events["client-token-replay"] >= 1
    assert job.handle["command_id"]


async def test_a_launch_that_stays_uncertain_is_swept_by_tag_before_it_fails(
    make_backend, root, sim
):
    # Every answer lost, and the new instance unlisted for a while: the sweep must look over
    # the consistency window, find it by its tag and terminate it before the launch fails.
    sim.configure(lost_create_fleet(10**6))
    sim.configure({"consistency": {"instance_unlisted_seconds": 0.5}})
    backend = make_backend(consistency_window_seconds=1.0)
    job = make_job(root)
    with pytest.raises(BackendError, match="CreateFleet") as err:
        await backend.launch(job, Recorder(job))
    found = launched_for(sim, job.id)
    assert len(found) == 1 and all(state in GONE for state in found.values())
    assert f"{next(iter(found))} was terminated" in str(err.value)


async def test_reattach_of_a_launch_cut_short_looks_by_tag_over_the_window(
    make_backend, root, sim, aws
):
    # The server died inside CreateFleet: the attempt was recorded, no instance id. The
    # instance exists but EC2 does not list it yet.
    # The window is long and ended by hand: a loaded CI machine once outran a 0.5 s one.
    sim.configure({"consistency": {"instance_unlisted_seconds": 600}})
    job = make_job(root)
    job.handle["launch_attempt"] = {"client_token": "t", "at": time.time()}
    tags = {"awsjobs:managed": "true", "awsjobs:owner": "tester", "awsjobs:job-id": job.id}
    instance_id = await launch_tagged(await aws("ec2"), tags)
    restarted = make_backend(consistency_window_seconds=30)
    with pytest.raises(BackendError, match="visible yet"):
        await restarted.reattach(job)  # not "failed: never launched"
    sim.settle(instance_id)
    outcome = await restarted.reattach(job)
    assert outcome.state is JobState.FAILED and "launching" in outcome.error
    found = launched_for(sim, job.id)
    assert len(found) == 1 and all(state in GONE for state in found.values())


async def test_a_look_sent_in_the_window_and_answered_after_it_is_not_the_last(
    make_backend, root, sim, aws
):
    # EC2 does not list the instance when the sweep's first look is sent; the answer comes
    # back after the window has ended. That look proves nothing about the window's end: the
    # sweep must look again (and find the instance), not report "none was launched".
    window = 1.0
    sim.configure({"consistency": {"instance_unlisted_seconds": 600}})
    backend = make_backend(consistency_window_seconds=window)
    job = make_job(root)
    tags = {"awsjobs:managed": "true", "awsjobs:owner": "tester", "awsjobs:job-id": job.id}
    since = time.time()
    instance_id = await launch_tagged(await aws("ec2"), tags)
    look = backend.job_instances.of_job
    answers: list[Any] = []

    async def first_answer_late(j: Any) -> Any:
        found = await look(j)
        if not answers:
            await asyncio.sleep(max(0.0, since + window + 0.2 - time.time()))
            sim.settle(instance_id)  # EC2 has caught up by the time the answer arrives
        answers.append(found)
        return found

    backend.job_instances.of_job = first_answer_late
    said = await backend.job_instances.sweep(job, since=since)
    assert f"{instance_id} was terminated" in said
    assert launched_for(sim, job.id)[instance_id] in GONE
