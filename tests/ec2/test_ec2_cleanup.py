"""A failed launch leaves nothing running: when SendCommand fails hard, the instance is
terminated and the termination confirmed, retried with backoff while AWS fails, before the
launch fails (and so before the job reads `failed`); the message says what really happened."""

from __future__ import annotations

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.errors import BackendError

GONE = ("shutting-down", "terminated")


async def test_send_command_fails_and_terminate_fails_for_a_while(make_backend, root, sim, faults):
    faults.always("ssm", "SendCommand", "AccessDeniedException")
    faults.add("ec2", "TerminateInstances", "UnauthorizedOperation", times=3)
    backend = make_backend(ssm_access_denied_grace_seconds=0)  # a denial is final at once
    job = make_job(root)
    with pytest.raises(BackendError, match="SendCommand failed") as err:
        await backend.launch(job, Recorder(job))
    # When the launch fails, the instance is terminated, as its message says.
    iid = job.handle["instance_id"]
    assert sim.simulator.machine(iid).state in GONE
    assert f"instance {iid} was terminated" in str(err.value)
    assert faults.calls[("ec2", "TerminateInstances")] >= 4


async def test_a_termination_that_never_succeeds_is_not_called_one(make_backend, root, sim, faults):
    faults.always("ssm", "SendCommand", "AccessDeniedException")
    faults.always("ec2", "TerminateInstances", "UnauthorizedOperation")
    # A cleanup budget longer than one TerminateInstances takes on a loaded machine (0.3 s was
    # not): it must be tried again within it.
    backend = make_backend(launch_cleanup_timeout_seconds=5.0, ssm_access_denied_grace_seconds=0)
    job = make_job(root)
    with pytest.raises(BackendError) as err:
        await backend.launch(job, Recorder(job))
    iid = job.handle["instance_id"]
    message = str(err.value)
    assert "was terminated" not in message and f"{iid} terminated" not in message
    assert f"could not terminate instance {iid}" in message and "UnauthorizedOperation" in message
    assert "lifetime" in message  # what still ends it
    assert faults.calls[("ec2", "TerminateInstances")] > 1  # it kept trying
