"""The worker: a boot script and a command text shaped like the app's, run in the sandbox."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.awssim.server import SimulatedAWS
from tests.awssim.support import Clients, describe, eventually, launch, registered, state_of

BOOT = """#!/bin/bash
set -u
exec >>/var/log/awsjobs-boot.log 2>&1
mkdir -p /run/awsjobs /var/lib/awsjobs
shutdown -h +{minutes} 'awsjobs: maximum lifetime reached'
MOUNT_PATH={efs}
mkdir -p "$MOUNT_PATH"
if mountpoint -q "$MOUNT_PATH" || mount -t efs -o tls fs-12345678:/ "$MOUNT_PATH"; then
  touch /run/awsjobs/ready
else
  echo "could not mount EFS" > /run/awsjobs/mount-failed
fi
mkdir -p /var/lib/cloud/scripts/per-boot
cat > /var/lib/cloud/scripts/per-boot/awsjobs-rearm <<'SCRIPT'
#!/bin/bash
echo boot >> /var/lib/awsjobs/boots
SCRIPT
chmod +x /var/lib/cloud/scripts/per-boot/awsjobs-rearm
echo ran >> /var/lib/awsjobs/user-data-runs
"""

COMMAND = """set -u
AWSJOBS_LOG={log}
AWSJOBS_EXIT={exit_file}
while [ ! -e /run/awsjobs/ready ]; do
  if [ -e /run/awsjobs/mount-failed ]; then
    cat /run/awsjobs/mount-failed >&2
    shutdown -h now 'awsjobs: no file system' >/dev/null 2>&1 || true
    exit 97
  fi
  sleep 0.1
done
if ! mkdir /run/awsjobs/job-started 2>/dev/null; then exit 0; fi
mkdir -p "$(dirname "$AWSJOBS_EXIT")"
cd {efs}
echo "[awsjobs] job started on $(hostname)" >> "$AWSJOBS_LOG"
{job} >> "$AWSJOBS_LOG" 2>&1 < /dev/null
rc=$?
printf '%s\\n' "$rc" > "$AWSJOBS_EXIT.tmp.$$" && mv -f "$AWSJOBS_EXIT.tmp.$$" "$AWSJOBS_EXIT"
shutdown -h now 'awsjobs: job finished' >/dev/null 2>&1 || true
exit "$rc"
"""


@pytest.fixture
def efs(sim: SimulatedAWS, tmp_path: Path) -> Path:
    """The folder standing for EFS (the Jupyter server root)."""
    root = tmp_path / "efs"
    root.mkdir()
    sim.configure({"worker": {"efs_root": str(root)}})
    return root


def boot_script(efs: Path, minutes: int = 60) -> str:
    return BOOT.format(minutes=minutes, efs=shlex.quote(str(efs)))


def command(efs: Path, job: str) -> list[str]:
    text = COMMAND.format(
        log=shlex.quote(str(efs / "job.log")),
        exit_file=shlex.quote(str(efs / ".jobs" / "j1" / "exit_code")),
        efs=shlex.quote(str(efs)),
        job=job,
    )
    return text.splitlines()


async def run_job(ssm: Any, instance_id: str, lines: list[str]) -> str:
    answer = await ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": lines, "executionTimeout": ["3600"]},
    )
    return str(answer["Command"]["CommandId"])


async def reaches(ec2: Any, instance_id: str, state: str) -> None:
    async def check() -> bool:
        return await state_of(ec2, instance_id) == state

    await eventually(check)


async def booted(
    sim: SimulatedAWS, aws: Clients, user_data: str, **params: Any
) -> tuple[Any, Any, str]:
    """EC2 and SSM clients and an instance launched with `user_data`, its agent registered."""
    ec2, ssm = await aws("ec2"), await aws("ssm")
    instance_id = await launch(ec2, UserData=user_data, **params)
    await registered(sim, instance_id)
    return ec2, ssm, instance_id


async def test_a_job_runs_writes_its_files_and_its_instance_terminates(
    sim: SimulatedAWS, aws: Clients, efs: Path
) -> None:
    ec2, ssm, instance_id = await booted(
        sim, aws, boot_script(efs), InstanceInitiatedShutdownBehavior="terminate"
    )
    command_id = await run_job(ssm, instance_id, command(efs, "sh -c 'echo hello; exit 4'"))
    await reaches(ec2, instance_id, "terminated")
    assert (efs / ".jobs" / "j1" / "exit_code").read_text() == "4\n"
    log = (efs / "job.log").read_text()
    assert "[awsjobs] job started on" in log and "hello\n" in log
    reason = (await describe(ec2, instance_id))["StateReason"]["Code"]
    assert reason == "Client.InstanceInitiatedShutdown"
    answer = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert (answer["Status"], answer["ResponseCode"]) == ("Failed", 4)
    calls = sim.state()["instances"][0]["shim_calls"]
    assert "shutdown -h +60 awsjobs: maximum lifetime reached" in calls
    assert f"mount -t efs -o tls fs-12345678:/ {efs}" in calls
    assert "shutdown -h now awsjobs: job finished" in calls
    sandbox = sim.sandbox(instance_id)
    assert (sandbox / "run" / "awsjobs" / "ready").exists()  # markers stay in the sandbox
    assert (sandbox / "var" / "log" / "awsjobs-boot.log").exists()


async def test_shutdown_behaviour_stop_leaves_the_instance_stopped(
    sim: SimulatedAWS, aws: Clients, efs: Path
) -> None:
    ec2, ssm, instance_id = await booted(sim, aws, boot_script(efs))  # AWS's default: stop
    await run_job(ssm, instance_id, command(efs, "true"))
    await reaches(ec2, instance_id, "stopped")
    reason = (await describe(ec2, instance_id))["StateReason"]["Code"]
    assert reason == "Client.InstanceInitiatedShutdown"


async def test_the_lifetime_shutdown_fires_by_itself(
    sim: SimulatedAWS, aws: Clients, efs: Path
) -> None:
    sim.configure({"clock": {"shutdown_minute_seconds": 0.3}})
    ec2 = await aws("ec2")
    instance_id = await launch(
        ec2, UserData=boot_script(efs, minutes=1), InstanceInitiatedShutdownBehavior="terminate"
    )
    await reaches(ec2, instance_id, "terminated")


async def test_a_reboot_loses_processes_markers_and_the_scheduled_shutdown(
    sim: SimulatedAWS, aws: Clients, efs: Path
) -> None:
    ec2, ssm, instance_id = await booted(sim, aws, boot_script(efs))
    sandbox = sim.sandbox(instance_id)
    command_id = await run_job(ssm, instance_id, command(efs, "sleep 30"))

    async def in_progress() -> bool:
        answer = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        return bool(answer["Status"] == "InProgress")

    await eventually(in_progress)
    assert sim.state()["instances"][0]["shutdown_scheduled_in"] is not None
    await ec2.reboot_instances(InstanceIds=[instance_id])
    answer = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert answer["Status"] == "Failed"  # its process died with the reboot

    async def back() -> bool:
        return bool(sim.state()["instances"][0]["ssm_registered"])

    await eventually(back)
    boots = sandbox / "var/lib/awsjobs/boots"

    async def per_boot_ran() -> bool:
        return boots.exists()

    await eventually(per_boot_ran)
    assert not (sandbox / "run" / "awsjobs" / "ready").exists()  # tmpfs emptied
    assert sim.state()["instances"][0]["shutdown_scheduled_in"] is None
    assert (sandbox / "var/lib/awsjobs/user-data-runs").read_text() == "ran\n"  # once only
    assert boots.read_text() == "boot\n"  # the per-boot script ran; user data did not
    assert await state_of(ec2, instance_id) == "running"
    assert not (efs / ".jobs" / "j1" / "exit_code").exists()


async def test_a_failed_mount_and_the_efs_folder_check(
    sim: SimulatedAWS, aws: Clients, efs: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "not-efs"
    ec2, ssm, instance_id = await booted(
        sim, aws, boot_script(elsewhere), InstanceInitiatedShutdownBehavior="terminate"
    )
    command_id = await run_job(ssm, instance_id, command(efs, "true"))
    await reaches(ec2, instance_id, "terminated")
    answer = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert answer["ResponseCode"] == 97
    assert "could not mount EFS" in answer["StandardErrorContent"]
    sim.configure({"worker": {"mount_fails": True}})
    other = await launch(ec2, UserData=boot_script(efs))
    failed_marker = sim.sandbox(other) / "run" / "awsjobs" / "mount-failed"

    async def marked() -> bool:
        return failed_marker.exists()

    await eventually(marked)


async def test_terminate_instances_kills_the_running_command(
    sim: SimulatedAWS, aws: Clients, efs: Path
) -> None:
    ec2, ssm, instance_id = await booted(sim, aws, boot_script(efs))
    marker, gate = efs / "finished", efs / "go"
    # The job waits for `gate` (not a sleep that a slow termination could outlast).
    job = f"sh -c 'while [ ! -e {gate} ]; do sleep 0.1; done; touch {marker}'"
    command_id = await run_job(ssm, instance_id, command(efs, job))

    async def started() -> bool:
        return (efs / "job.log").exists()

    await eventually(started)
    await ec2.terminate_instances(InstanceIds=[instance_id])
    gate.touch()
    await asyncio.sleep(1.5)
    assert not marker.exists()
    answer = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert answer["Status"] == "InProgress"  # the agent is gone: it never reports
