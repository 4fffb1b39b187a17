"""The worker's own deadline survives a reboot, on the simulated AWS with its worker running the
real boot script (tests/awssim/README.md: a reboot loses a scheduled `shutdown` and `/run`,
user data runs on the first boot only, per-boot scripts at every boot).

The deadline is in real minutes (the worker's clock knows nothing of a test minute); the
simulator makes one minute of `shutdown -h +N` last `UNTIL_REBOOTED` seconds, then `MINUTE`
seconds once a test reboots the instance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.aws import tags
from awsjobs_lab.aws.instances import timestamp
from awsjobs_lab.backends.ec2 import EC2Backend
from tests.awssim.server import SimulatedAWS
from tests.awssim.support import eventually

MINUTE = 3.0  # a minute of `shutdown -h +N` from the test's reboot on
# The first boot's `shutdown -h +1` must not fire before the test reboots the instance: a
# loaded machine can take longer than MINUTE to get there, so a minute lasts this until then.
UNTIL_REBOOTED = 600.0
WORKER_CLOCK = {
    "boot_seconds": 0.1,
    "agent_register_seconds": 0.1,
    "halt_delay_seconds": 0.05,
    "shutting_down_seconds": 0.1,
    "reboot_seconds": 0.1,
    "shutdown_minute_seconds": UNTIL_REBOOTED,
}
SLEEPER = "import time\ntime.sleep(120)\n"  # the job outlives the test unless its instance ends


@pytest.fixture
def worker(sim: SimulatedAWS, root: Path) -> SimulatedAWS:
    """The simulator's worker on: boot scripts and commands really run, `root` is the EFS."""
    sim.configure({"clock": WORKER_CLOCK, "worker": {"enabled": True, "efs_root": str(root)}})
    return sim


async def _launch(backend: EC2Backend, root: Path, minutes: int) -> str:
    job = make_job(root, "sleeper.py", body=SLEEPER, max_lifetime_minutes=minutes)
    await backend.launch(job, Recorder(job))
    return str(job.handle["instance_id"])


def _shutdowns(sim: SimulatedAWS, iid: str) -> list[str]:
    return [c for c in sim.simulator.machine(iid).shim_calls if c.startswith("shutdown")]


async def _booted(sim: SimulatedAWS, iid: str) -> Path:
    """Wait until the first boot has armed the deadline; the instance's disk."""
    deadline_file = sim.sandbox(iid) / "var/lib/awsjobs/deadline"

    async def armed() -> bool:
        return deadline_file.is_file() and bool(_shutdowns(sim, iid))

    await eventually(armed, timeout=60)
    return deadline_file


async def _ended(aws: Any, iid: str, timeout: float) -> dict[str, Any]:
    ec2 = await aws("ec2")

    async def terminated() -> dict[str, Any] | None:
        resp = await ec2.describe_instances(InstanceIds=[iid])
        instance = resp["Reservations"][0]["Instances"][0]
        return dict(instance) if instance["State"]["Name"] == "terminated" else None

    found: dict[str, Any] = await eventually(terminated, timeout=timeout)
    return found


async def test_the_deadline_is_rearmed_after_a_reboot(worker, make_backend, root, aws):
    backend = make_backend()
    before = time.time()
    iid = await _launch(backend, root, minutes=1)
    deadline_file = await _booted(worker, iid)

    # The absolute deadline is on the instance's disk; RunInstances tagged the same deadline.
    on_disk = int(deadline_file.read_text())
    assert before + 60 - 5 <= on_disk <= time.time() + 60 + 5
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(InstanceIds=[iid])
    found = tags.tags_of(resp["Reservations"][0]["Instances"][0])
    expires_at = timestamp(found[tags.EXPIRES_AT])
    assert expires_at is not None and abs(expires_at - on_disk) <= 5
    assert found[tags.EXPIRES_AT].endswith("Z")  # UTC
    assert _shutdowns(worker, iid) == ["shutdown -h +1 awsjobs: maximum lifetime reached"]

    # A reboot loses the scheduled shutdown; the per-boot script arms it again.
    worker.configure({"clock": {"shutdown_minute_seconds": MINUTE}})  # for the one armed now
    worker.reboot(iid)
    rebooted = time.monotonic()

    async def rearmed() -> bool:
        return len(_shutdowns(worker, iid)) == 2

    await eventually(rearmed, timeout=60)
    assert _shutdowns(worker, iid)[1] == "shutdown -h +1 awsjobs: maximum lifetime reached"

    # ... and the instance ends at its deadline, by itself.
    instance = await _ended(aws, iid, timeout=60)
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert time.monotonic() - rebooted >= MINUTE * 0.9


@pytest.mark.parametrize("deadline", ["1", "not a time"])
async def test_a_reboot_past_the_deadline_powers_off_at_once(
    worker, make_backend, root, aws, deadline
):
    backend = make_backend()
    iid = await _launch(backend, root, minutes=60)
    deadline_file = await _booted(worker, iid)
    deadline_file.write_text(deadline + "\n")  # passed (or unreadable) while it was down

    worker.reboot(iid)
    # (a `shutdown -h +N` would last N * UNTIL_REBOOTED: ending at all shows it was `now`)
    instance = await _ended(aws, iid, timeout=60)
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert _shutdowns(worker, iid)[-1].startswith("shutdown -h now")
