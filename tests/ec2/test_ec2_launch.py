"""Launch: the launch template and CreateFleet parameters read back from moto, the boot
script, SendCommand retries, the launch timeout and capacity fallbacks."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.aws.userdata import MAX_USER_DATA_BYTES
from awsjobs_lab.errors import BackendError, InvalidRequest


async def _instance(ec2: Any, iid: str) -> dict[str, Any]:
    resp = await ec2.describe_instances(InstanceIds=[iid])
    return dict(resp["Reservations"][0]["Instances"][0])


def _tags(obj: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


async def test_on_demand_launch_parameters(make_backend, root, aws, subnets):
    backend = make_backend(security_group_ids=[], key_name="")
    job = make_job(root, "hello.py")
    rec = Recorder(job)
    await backend.launch(job, rec)

    # The RunInstances attempt is recorded first (before the call), then the instance id,
    # alone with the choice, before SendCommand.
    assert list(rec.calls[0][0]) == ["launch_attempt"]
    first, fields = rec.calls[1]
    iid = first["instance_id"]
    assert first["availability_zone"] == "us-east-1a"
    assert first["subnet_id"] == subnets["us-east-1a"]
    assert fields["instance_type"] == job.instance_type
    assert fields["command"] == ["python3", "hello.py"]
    assert fields["started_at"] > 0
    assert "command_id" in rec.calls[2][0]

    ec2 = await aws("ec2")
    inst = await _instance(ec2, iid)
    assert inst["ImageId"] == "ami-12c6146b"
    assert inst["SubnetId"] == subnets["us-east-1a"]
    assert "InstanceLifecycle" not in inst  # on-demand
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    tags = _tags(inst)
    assert tags["awsjobs:job-id"] == job.id
    assert tags["awsjobs:owner"] == "tester"
    assert tags["awsjobs:managed"] == "true"
    assert tags["Name"] == f"awsjobs-hello.py-{job.id}"

    attr = await ec2.describe_instance_attribute(
        InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"

    vols = await ec2.describe_volumes(Filters=[{"Name": "tag:awsjobs:job-id", "Values": [job.id]}])
    assert len(vols["Volumes"]) == 1
    vol = vols["Volumes"][0]
    assert vol["Size"] == 30 and vol["VolumeType"] == "gp3"
    assert _tags(vol)["awsjobs:managed"] == "true"

    raw = await ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    user_data = base64.b64decode(raw["UserData"]["Value"]).decode()
    assert user_data.startswith("#!/bin/bash\n")
    assert "shutdown -h +60 " in user_data
    assert user_data.index("shutdown -h +60") < user_data.index("mount -t efs")
    assert "FS_ID=fs-0123456789abcdef0" in user_data
    assert f"MOUNT_PATH={root}" in user_data
    assert "mount -t nfs4" in user_data
    check = _bash_syntax_check(user_data)
    assert check.returncode == 0, check.stderr


async def _capture(backend: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the backend's EC2 client makes."""
    sent: list[dict[str, Any]] = []
    ec2 = await backend.clients.ec2()
    ec2.meta.events.register(
        f"provide-client-params.ec2.{operation}", lambda params, **_: sent.append(dict(params))
    )
    return sent


def _bash_syntax_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)


async def test_spot_launch_in_cheapest_zone(make_backend, root, aws, subnets, seed_spot):
    # R awsjobs found the cheapest zone but did not launch there: we must.
    seed_spot[("c7i.large", "us-east-1a")] = "0.0400"
    seed_spot[("c7i.large", "us-east-1b")] = "0.0210"
    seed_spot[("c7a.large", "us-east-1a")] = "0.0300"
    backend = make_backend()
    fleets = await _capture(backend, "CreateFleet")
    templates = await _capture(backend, "CreateLaunchTemplate")
    job = make_job(root, spot=True, memory_gib=4, cpus=2)
    rec = Recorder(job)
    await backend.launch(job, rec)
    # What we asked for: one instant fleet, spot, AWS's recommended spot strategy, every pool
    # of the cheapest types offered at once (the cheapest first).
    (fleet,) = fleets
    assert fleet["Type"] == "instant"
    assert fleet["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 1,
        "DefaultTargetCapacityType": "spot",
    }
    assert fleet["SpotOptions"] == {
        "AllocationStrategy": "price-capacity-optimized",
        "InstanceInterruptionBehavior": "terminate",
    }
    overrides = fleet["LaunchTemplateConfigs"][0]["Overrides"]
    assert overrides[0] == {"InstanceType": "c7i.large", "SubnetId": subnets["us-east-1b"]}
    assert len({o["InstanceType"] for o in overrides}) == 10
    # Idempotent on AWS (and on the simulator): the same job and pools, the same token.
    assert fleet["ClientToken"] == job.handle["launch_attempt"]["client_token"]
    assert fleet["ClientToken"].startswith(f"awsjobs-{job.id}-")
    (template,) = templates
    data = template["LaunchTemplateData"]
    assert "InstanceMarketOptions" not in data  # EC2 Fleet refuses it: the fleet says spot
    assert data["IamInstanceProfile"] == {"Name": "awsjobs-worker"}
    assert data["BlockDeviceMappings"][0]["Ebs"] == {
        "VolumeSize": 30,
        "VolumeType": "gp3",
        "DeleteOnTermination": True,
    }
    iid = job.handle["instance_id"]
    assert job.instance_type == "c7i.large"
    assert job.hourly_price == pytest.approx(0.021)
    ec2 = await aws("ec2")
    inst = await _instance(ec2, iid)
    assert inst["InstanceLifecycle"] == "spot"
    assert inst["SubnetId"] == subnets["us-east-1b"]
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert _tags(inst)["awsjobs:hourly-price"] == "0.021000"


async def test_user_data_cap_is_enforced_before_launching(make_backend, root, aws):
    backend = make_backend(extra_user_data="echo " + "x" * MAX_USER_DATA_BYTES)
    job = make_job(root)
    with pytest.raises(InvalidRequest, match="16384"):
        await backend.launch(job, Recorder(job))
    ec2 = await aws("ec2")
    assert (await ec2.describe_instances())["Reservations"] == []


async def test_send_command_retried_until_ssm_knows_the_instance(make_backend, root, faults):
    # Real SSM answers InvalidInstanceId until the agent registers.
    faults.add("ssm", "SendCommand", "InvalidInstanceId", times=3)
    # A launch timeout four calls cannot outlast (the fixture's 5 s can on a loaded machine).
    backend = make_backend(launch_timeout_seconds=600.0)
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    assert job.handle["command_id"]
    assert faults.calls[("ssm", "SendCommand")] == 4


async def test_launch_timeout_fails_clearly_and_terminates(make_backend, root, faults, aws):
    faults.always("ssm", "SendCommand", "InvalidInstanceId")
    backend = make_backend(launch_timeout_seconds=0.2)
    job = make_job(root)
    with pytest.raises(BackendError, match="SSM") as err:
        await backend.launch(job, Recorder(job))
    assert "terminated" in str(err.value)
    iid = job.handle["instance_id"]
    inst = await _instance(await aws("ec2"), iid)
    assert inst["State"]["Name"] in ("shutting-down", "terminated")


async def test_capacity_error_falls_back_to_the_next_zone(make_backend, root, sim, subnets):
    # AWS answers InsufficientInstanceCapacity (HTTP 500: botocore retries it) for the zone.
    sim.configure(
        {"capacity": {"rules": [{"error": "InsufficientInstanceCapacity", "zone": "us-east-1a"}]}}
    )
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    assert job.handle["availability_zone"] == "us-east-1b"
    assert job.handle["subnet_id"] == subnets["us-east-1b"]


async def test_capacity_errors_exhausted_fail_with_a_clear_message(make_backend, root, sim, aws):
    sim.configure({"capacity": {"rules": [{"error": "InsufficientInstanceCapacity"}]}})
    backend = make_backend(max_launch_attempts=2)
    sent = await _capture(backend, "CreateFleet")  # once per call, botocore's retries aside
    job = make_job(root)
    with pytest.raises(BackendError, match="no capacity"):
        await backend.launch(job, Recorder(job))
    # One call: AWS tried every pool offered; another offer of the same pools would not help.
    assert len(sent) == 1
    assert (await (await aws("ec2")).describe_instances())["Reservations"] == []


async def test_not_configured_names_the_settings(make_backend, root):
    backend = make_backend(image_id="", subnet_ids=[], instance_profile_name="")
    assert not backend.is_configured()
    job = make_job(root)
    with pytest.raises(Exception, match=r"c\.EC2Backend\.image_id.*subnet_ids") as err:
        backend.validate(job)
    assert err.value.status == 400
    info = backend.describe()
    assert "c.EC2Backend.instance_profile_name" in info["missing_settings"]
    assert info["configured"] is False


async def test_root_outside_the_efs_mount_is_refused(make_backend, root):
    backend = make_backend(efs_mount_path="/mnt/elsewhere")
    assert not backend.is_configured()
    assert "not inside" in backend.describe()["problem"]


# -- the SSM command: read back from moto, then really run by bash ------------------------------


async def _command_lines(aws: Any, job: Any) -> list[str]:
    ssm = await aws("ssm")
    resp = await ssm.list_commands(CommandId=job.handle["command_id"])
    (cmd,) = resp["Commands"]
    # Only our instance: with the fan-out shim a targeting mistake would show here.
    assert cmd["InstanceIds"] == [job.handle["instance_id"]]
    assert cmd["DocumentName"] == "AWS-RunShellScript"
    timeout = int(cmd["Parameters"]["executionTimeout"][0])
    assert 3500 <= timeout <= 3600  # the remaining lifetime
    return list(cmd["Parameters"]["commands"])


def _run_on_fake_worker(
    lines: list[str], tmp: Path, shell: str = "bash", ready: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the command text like the SSM agent would, with /run/awsjobs and `shutdown` faked."""
    markers = tmp / "run-awsjobs"
    markers.mkdir(exist_ok=True)
    if ready:
        (markers / "ready").touch()
    fakebin = tmp / "fakebin"
    fakebin.mkdir(exist_ok=True)
    shutdown = fakebin / "shutdown"
    shutdown.write_text(f'#!/bin/sh\necho "$@" >> {tmp}/shutdown-called\n')
    shutdown.chmod(0o755)
    home = tmp / "fakehome"
    home.mkdir(exist_ok=True)
    (home / "canary").write_text("still here")
    script = "\n".join(lines).replace("/run/awsjobs", str(markers))
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(
        [shell, "-c", script], env=env, cwd=tmp, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name",
    ["hello.py", "a;rm -rf ~.py", "$(touch pwned).py", 'it\'s a "test" `x`.py', "-dash.py"],
)
async def test_command_text_really_runs_the_script(make_backend, root, aws, tmp_path, name):
    backend = make_backend()
    body = (
        "import os, sys\n"
        "print('ran', os.environ['GREETING'])\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    job = make_job(root, name, body=body, env={"GREETING": "it's $HOME `id` $(id)"})
    await backend.launch(job, Recorder(job))
    lines = await _command_lines(aws, job)

    result = _run_on_fake_worker(lines, tmp_path)
    assert result.returncode == 0, result.stderr
    log = (root / job.log_path).read_text()
    assert "ran it's $HOME `id` $(id)" in log
    assert "to stderr" in log
    assert (backend.job_state_dir(job) / "exit_code").read_text() == "0\n"
    assert "-h now" in (tmp_path / "shutdown-called").read_text()
    # Nothing hostile happened.
    assert (tmp_path / "fakehome" / "canary").read_text() == "still here"
    assert not list(tmp_path.rglob("pwned")) and not list(root.rglob("pwned"))


async def test_command_appends_and_records_a_failure(make_backend, root, aws, tmp_path):
    backend = make_backend()
    job = make_job(root, "fail.py", body="import sys\nprint('partial')\nsys.exit(3)\n")
    log = root / job.log_path
    log.write_text("earlier line\n")
    await backend.launch(job, Recorder(job))
    result = _run_on_fake_worker(await _command_lines(aws, job), tmp_path)
    assert result.returncode == 3
    text = log.read_text()
    assert text.startswith("earlier line\n") and "partial" in text
    assert (backend.job_state_dir(job) / "exit_code").read_text() == "3\n"


async def test_a_duplicate_command_waits_for_the_first_run_and_shares_its_exit_code(
    make_backend, root, aws, tmp_path
):
    # SendCommand retried after a lost answer (by botocore itself, or by us) reaches the worker
    # twice. The copy must not run the job again, nor end at once: the server may have recorded
    # the copy's command id, and would judge a job still running by a command that had ended.
    backend = make_backend()
    flag = root / "go"
    body = (
        "import pathlib, sys, time\n"
        "print('ran once', flush=True)\n"  # seen in the log while it waits
        f"while not pathlib.Path({str(flag)!r}).exists(): time.sleep(0.05)\n"
        "sys.exit(3)\n"
    )
    job = make_job(root, "slow.py", body=body)
    await backend.launch(job, Recorder(job))
    lines = await _command_lines(aws, job)
    first = asyncio.create_task(asyncio.to_thread(_run_on_fake_worker, lines, tmp_path))
    log = root / job.log_path
    for _ in range(2400):  # the first run has started the script (a generous bound)
        if log.exists() and "ran once" in log.read_text():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first run did not start the script")
    second = asyncio.create_task(asyncio.to_thread(_run_on_fake_worker, lines, tmp_path))
    await asyncio.sleep(1.0)
    assert not second.done()  # still waiting for the first run
    flag.touch()
    first_result, second_result = await asyncio.gather(first, second)
    assert first_result.returncode == 3
    assert second_result.returncode == 3, second_result.stderr
    assert "already started" in second_result.stderr
    assert log.read_text().count("ran once") == 1


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash not installed")
async def test_command_text_is_posix_sh(make_backend, root, aws, tmp_path):
    # The SSM agent runs the commands with sh, which is dash on Debian/Ubuntu images.
    backend = make_backend()
    job = make_job(root, "x y.py")
    await backend.launch(job, Recorder(job))
    result = _run_on_fake_worker(await _command_lines(aws, job), tmp_path, shell="dash")
    assert result.returncode == 0, result.stderr
    assert (backend.job_state_dir(job) / "exit_code").read_text() == "0\n"


async def test_command_waits_for_the_mount_and_fails_clearly(make_backend, root, aws, tmp_path):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    lines = await _command_lines(aws, job)
    markers = tmp_path / "run-awsjobs"
    markers.mkdir()
    (markers / "mount-failed").write_text("could not mount EFS fs-0123 at /x\n")
    # No 'ready' marker: the boot script reported a failed mount.
    result = _run_on_fake_worker(lines, tmp_path, ready=False)
    assert result.returncode == 97
    assert "could not mount EFS" in result.stderr
    assert "-h now" in (tmp_path / "shutdown-called").read_text()
    assert not (backend.job_state_dir(job) / "exit_code").exists()
    assert not (root / job.log_path).exists()


async def test_spot_limit_is_not_retried_and_says_what_to_do(make_backend, root, sim, faults):
    sim.configure({"capacity": {"spot_vcpus": {"standard": 0}}})
    backend = make_backend()
    job = make_job(root, spot=True)
    with pytest.raises(BackendError, match="try on-demand"):
        await backend.launch(job, Recorder(job))
    assert faults.calls[("ec2", "CreateFleet")] == 1  # another zone or type would not help


async def test_check_request_refuses_an_unknown_requested_type(make_backend, root):
    backend = make_backend()
    job = make_job(root, requested_instance_type="x9z.huge", instance_type="x9z.huge")
    with pytest.raises(InvalidRequest, match="Unknown EC2 instance type"):
        await backend.check_request(job)
    with pytest.raises(InvalidRequest, match="Unknown EC2 instance type"):
        await backend.launch(job, Recorder(job))


async def test_a_burst_of_launches_keeps_few_launches_in_flight(make_backend, root):
    # AWS rate-limits launches per account: a burst of jobs queues in the backend.
    backend = make_backend(max_concurrent_run_instances=2)
    ec2 = await backend.clients.ec2()
    in_flight = 0
    most = 0

    def before(**_: Any) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)

    def after(**_: Any) -> None:
        nonlocal in_flight
        in_flight -= 1

    ec2.meta.events.register("before-call.ec2.CreateFleet", before)
    ec2.meta.events.register("after-call.ec2.CreateFleet", after)
    jobs = [make_job(root, f"burst{i}.py") for i in range(6)]
    await asyncio.gather(*(backend.launch(job, Recorder(job)) for job in jobs))
    assert all(job.handle.get("instance_id") for job in jobs)
    assert most == 2


# -- quotas: another quota group, not the end of the launch -------------------------------------


async def test_vcpu_quota_of_one_group_moves_the_launch_to_another_group(make_backend, root, sim):
    # AWS counts On-Demand vCPUs per quota group (standard A/C/D/H/I/M/R/T/Z, G and VT, P, ...):
    # the standard quota being used up says nothing about the G group.
    sim.configure({"capacity": {"on_demand_vcpus": {"standard": 0}}})
    backend = make_backend(allowed_families=["c7i", "g6"], include_accelerated_types=True)
    job = make_job(root, memory_gib=4, cpus=2)
    await backend.launch(job, Recorder(job))
    assert job.instance_type.startswith("g6.")
    # Standard pools refused, then the G group, all within one CreateFleet.
    assert sim.record.faults_by_action["ec2:CreateFleet:VcpuLimitExceeded"] >= 1
    assert sim.record.calls["ec2:CreateFleet"] == 1


async def test_root_volume_is_never_smaller_than_the_images_snapshot(make_backend, root, aws):
    # AWS refuses a root volume smaller than the AMI's root snapshot (InvalidBlockDeviceMapping).
    # moto's images have a 15 GiB root snapshot; the setting asks for 8.
    ec2 = await aws("ec2")
    image_id = (await ec2.register_image(Name="awsjobs-test", Architecture="x86_64"))["ImageId"]
    image = (await ec2.describe_images(ImageIds=[image_id]))["Images"][0]
    (mapping,) = image["BlockDeviceMappings"]
    snapshot_gib = mapping["Ebs"]["VolumeSize"]
    assert snapshot_gib > 8
    backend = make_backend(image_id=image_id, root_volume_gib=8)
    sent = await _capture(backend, "CreateLaunchTemplate")
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    (params,) = sent
    (root_mapping,) = params["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root_mapping["DeviceName"] == image["RootDeviceName"]
    assert root_mapping["Ebs"]["VolumeSize"] == snapshot_gib
    # A larger setting wins over the snapshot.
    bigger = make_backend(image_id=image_id, root_volume_gib=100)
    sent = await _capture(bigger, "CreateLaunchTemplate")
    job = make_job(root)
    await bigger.launch(job, Recorder(job))
    assert sent[0]["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 100


async def test_lifetimes_beyond_ssms_48_hours_are_refused_and_the_cap_is_described(
    make_backend, root
):
    # SSM ends a command at its executionTimeout, at most 172800 s (48 h): a longer lifetime
    # could never be honoured on EC2, so it is refused up front, and the cap is published.
    backend = make_backend()
    assert backend.describe()["max_lifetime_minutes"] == 2880
    backend.validate(make_job(root, max_lifetime_minutes=2880))
    with pytest.raises(InvalidRequest, match="48 hours") as err:
        backend.validate(make_job(root, max_lifetime_minutes=2881))
    assert err.value.status == 400
    assert "2880" in str(err.value)
