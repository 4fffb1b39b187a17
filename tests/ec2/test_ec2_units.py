"""Pure parts of the EC2 backend: rulings, the boot script, the command builder, backoff."""

from __future__ import annotations

import subprocess

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab import jobfiles
from awsjobs_lab.aws import clients, command, instances, monitor, ssm, userdata
from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.models import JobState

NOW = 1_000_000.0


def _inst(state: str, code: str = "", message: str = "") -> dict[str, object]:
    data: dict[str, object] = {"InstanceId": "i-0abc", "State": {"Name": state}}
    if code:
        data["StateReason"] = {"Code": code, "Message": message or code}
    return data


@pytest.mark.parametrize(
    ("instance", "exit_code", "deadline", "expected"),
    [
        (_inst("running"), 0, NOW + 60, JobState.SUCCEEDED),
        (_inst("terminated", "Server.SpotInstanceTermination"), 2, NOW, JobState.FAILED),
        (_inst("running"), None, NOW + 60, None),
        (_inst("pending"), None, NOW + 60, None),
        (_inst("running"), None, NOW - 3600, JobState.TIMED_OUT),  # its shutdown failed
        (_inst("stopped"), None, NOW + 60, JobState.FAILED),
        (_inst("terminated", "Server.SpotInstanceTermination"), None, NOW, JobState.INTERRUPTED),
        (_inst("shutting-down", "Client.InstanceInitiatedShutdown"), None, NOW, JobState.TIMED_OUT),
        (
            _inst("terminated", "Client.InstanceInitiatedShutdown"),
            None,
            NOW + 3600,
            JobState.FAILED,
        ),
        (_inst("terminated", "Client.UserInitiatedShutdown"), None, NOW + 60, JobState.FAILED),
        (_inst("terminated", "Server.InternalError"), None, NOW + 60, JobState.FAILED),
        (None, None, NOW + 60, JobState.FAILED),
    ],
)
def test_classify(instance, exit_code, deadline, expected):
    outcome = monitor.classify(instance, exit_code, now=NOW, deadline=deadline)
    assert (outcome.state if outcome else None) is expected


def test_classify_explains():
    out = monitor.classify(
        _inst("terminated", "Server.InternalError", "Server.InternalError: host failure"),
        None,
        now=NOW,
        deadline=NOW + 60,
    )
    assert out is not None and "host failure" in (out.error or "")


def test_outcome_for_command():
    timed = monitor.outcome_for_command(
        {"Status": "TimedOut", "StatusDetails": "ExecutionTimedOut"}
    )
    assert timed.state is JobState.TIMED_OUT
    failed = monitor.outcome_for_command(
        {"Status": "Failed", "ResponseCode": 97, "StandardErrorContent": "no mount"}
    )
    assert (
        failed.state is JobState.FAILED and "code 97" in failed.error and "no mount" in failed.error
    )


@pytest.mark.parametrize(
    ("status", "details", "state", "words"),
    [
        ("TimedOut", "Execution Timed Out", JobState.TIMED_OUT, "execution timeout"),
        ("TimedOut", "Delivery Timed Out", JobState.FAILED, "never delivered"),
        ("Failed", "Undeliverable", JobState.FAILED, "could not be delivered"),
        ("Cancelled", "Terminated", JobState.FAILED, "terminated"),
        ("Cancelled", "Cancelled", JobState.FAILED, "cancelled outside awsjobs"),
        ("Failed", "Access Denied", JobState.FAILED, "Access Denied"),
    ],
)
def test_outcome_for_command_reads_aws_status_details(status, details, state, words):
    # AWS's StatusDetails strings, with their spaces (GetCommandInvocation).
    outcome = monitor.outcome_for_command({"Status": status, "StatusDetails": details})
    assert outcome.state is state
    assert words in (outcome.error or "")


def test_read_exit_code(tmp_path):
    path = tmp_path / "exit_code"
    assert jobfiles.read_exit_code(path) is None
    path.write_text("")
    assert jobfiles.read_exit_code(path) is None
    path.write_text("137\n")
    assert jobfiles.read_exit_code(path) == 137
    path.write_text("garbage")
    assert jobfiles.read_exit_code(path) is None


def test_backoff_delay_is_bounded_and_grows():
    for attempt in range(8):
        delay = clients.backoff_delay(attempt, 1.0, 30.0)
        assert 0.5 <= delay <= min(30.0, 2.0**attempt)


@pytest.mark.parametrize(
    ("access_point", "iam"), [("", False), ("fsap-0123456789abcdef0", False), ("", True)]
)
def test_user_data_variants_are_valid_bash(access_point, iam):
    text = userdata.build_user_data(
        job_id="abc",
        lifetime_minutes=90,
        efs_file_system_id="fs-1",
        efs_access_point_id=access_point,
        efs_use_iam=iam,
        mount_path="/home/my user/it's",
        region="eu-west-1",
        extra_commands="dnf -y install htop",
    )
    assert "shutdown -h +90 " in text
    assert "MOUNT_PATH='/home/my user/it'\"'\"'s'" in text
    assert "REGION=eu-west-1" in text and '"$FS_ID.efs.$REGION.amazonaws.com:/"' in text
    assert "dnf -y install htop" in text
    check = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_user_data_limits():
    with pytest.raises(InvalidRequest, match="16384"):
        userdata.build_user_data(
            job_id="a",
            lifetime_minutes=5,
            efs_file_system_id="fs-1",
            mount_path="/x",
            region="us-east-1",
            extra_commands="#" * 20000,
        )
    with pytest.raises(InvalidRequest):
        userdata.build_user_data(
            job_id="a", lifetime_minutes=0, efs_file_system_id="fs-1", mount_path="/x", region="r"
        )


def test_command_builder_refuses_unsafe_input():
    base = {
        "job_id": "j",
        "argv": ["python3", "x.py"],
        "cwd": "/w",
        "log_path": "/w/x.log",
        "exit_code_path": "/w/.awsjobs/jobs/j/exit_code",
    }
    with pytest.raises(InvalidRequest, match="reserved"):
        command.build_commands(**base, env={"AWSJOBS_LOG": "/etc/passwd"})
    with pytest.raises(InvalidRequest, match="variable name"):
        command.build_commands(**base, env={"A;B": "x"})
    with pytest.raises(InvalidRequest, match="absolute"):
        command.build_commands(**{**base, "cwd": "relative"})
    with pytest.raises(InvalidRequest):
        command.build_commands(**{**base, "argv": []})
    lines = command.build_commands(**base, env={"X": "a b"}, shutdown=False)
    # The value is sent base64-encoded (SSM never reads it as a {{...}} reference) and exported.
    assert f"awsjobs_decode awsjobs_env_0 '{command.encode('a b')}' || awsjobs_undecodable" in lines
    assert 'export X="$awsjobs_env_0"' in lines
    assert not any("shutdown" in line for line in lines)


def test_execution_timeout_is_clamped():
    assert ssm.execution_timeout(-5) == 60
    assert ssm.execution_timeout(3600.7) == 3600
    assert ssm.execution_timeout(10**9) == 172800


async def test_image_from_an_ssm_parameter(make_backend, root, aws):
    parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    ssm = await aws("ssm")
    ami = (await ssm.get_parameter(Name=parameter))["Parameter"]["Value"]
    backend = make_backend(image_id="", image_ssm_parameter=parameter)
    assert backend.is_configured()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    ec2 = await aws("ec2")
    resp = await ec2.describe_instances(InstanceIds=[job.handle["instance_id"]])
    assert resp["Reservations"][0]["Instances"][0]["ImageId"] == ami


async def test_terminate_copes_with_unknown_ids_in_a_batch(make_backend, root, aws):
    backend = make_backend()
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    ec2 = await aws("ec2")
    iid = job.handle["instance_id"]
    states = await instances.terminate(ec2, [iid, "i-0123456789abcdef0"])
    assert states == {iid: "shutting-down", "i-0123456789abcdef0": "missing"}
