"""`awsjobs build-image` against moto (server mode, in this process; never real AWS), and on
the simulated AWS (tests/awssim) where it matters how AWS really behaves.

moto says every SSM command succeeded at once with empty output, so the moto tests shape the
command's invocation in-process right after SendCommand (docs/aws-testing.md §4.3): the versions
line, a failure, or "still running" for the interruption test. On the simulator the builder's
boot script and the install command really run (in a sandbox), a new AMI id answers
`InvalidAMIID.NotFound` for a while, and CreateImage without NoReboot reboots the builder.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.aws import image
from awsjobs_lab.aws import tags as tag_names
from awsjobs_lab.cli import main
from tests.awssim import SimulatedAWS
from tests.awssim.support import eventually

VERSIONS = {
    "python": "3.9.24",
    "papermill": "2.6.0",
    "ipykernel": "6.29.5",
    "r": "4.4.2",
    "rmarkdown": "2.29",
    "quarto": "1.6.42",
    "efs-utils": "2.1.0",
    "ssm-agent": "3.3.1611.0",
}
VERSIONS_LINE = "AWSJOBS_VERSIONS " + json.dumps(VERSIONS)


@pytest.fixture
def invocation(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What every new SSM command invocation will look like (edit the dict in a test)."""
    from moto.ssm.models import SimpleSystemManagerBackend

    shape: dict[str, Any] = {
        "Status": "Success",
        "StatusDetails": "Success",
        "ResponseCode": 0,
        "StandardOutputContent": "[awsjobs] done\n" + VERSIONS_LINE + "\n",
        "StandardErrorContent": "",
    }
    original = SimpleSystemManagerBackend.send_command

    def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        command = original(self, *args, **kwargs)
        for inv in command.invocations:
            inv.update(shape)
        if shape["Status"] != "Success":
            command.status = shape["Status"]
        return command

    monkeypatch.setattr(SimpleSystemManagerBackend, "send_command", send_command)
    yield shape


@pytest.fixture
async def instance_profile(aws: Any) -> str:
    iam = await aws("iam")
    await iam.create_role(RoleName="awsjobs-worker", AssumeRolePolicyDocument="{}")
    await iam.create_instance_profile(InstanceProfileName="awsjobs-worker")
    await iam.add_role_to_instance_profile(
        InstanceProfileName="awsjobs-worker", RoleName="awsjobs-worker"
    )
    return "awsjobs-worker"


@pytest.fixture
def aws_calls(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (action, request parameters) moto receives during the test."""
    from moto.core.responses import BaseResponse

    calls: list[tuple[str, Any]] = []
    original = BaseResponse.call_action

    def call_action(self: Any) -> Any:
        calls.append((self._get_action(), dict(self.querystring)))
        return original(self)

    monkeypatch.setattr(BaseResponse, "call_action", call_action)
    return calls


def options(endpoint: str, **kw: Any) -> image.BuildOptions:
    defaults: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "poll_seconds": 0.01,
        "instance_type": "t3.large",
    }
    defaults.update(kw)
    return image.BuildOptions(**defaults)


async def _instances(ec2: Any, **filters: Any) -> list[dict[str, Any]]:
    resp = await ec2.describe_instances(**filters)
    return [i for r in resp["Reservations"] for i in r["Instances"]]


async def _builders(ec2: Any) -> list[dict[str, Any]]:
    return await _instances(
        ec2, Filters=[{"Name": "tag:awsjobs:role", "Values": ["image-builder"]}]
    )


async def _our_images(ec2: Any) -> list[dict[str, Any]]:
    resp = await ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:awsjobs:image", "Values": ["true"]}]
    )
    return list(resp["Images"])


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


# ------------------------------------------------------------------------------------------
# The install script and the command text (no AWS)
# ------------------------------------------------------------------------------------------


def _shellcheck() -> str | None:
    found = shutil.which("shellcheck")
    if found:
        return found
    # `scripts/setup.sh` installs it for the test command; try once here too.
    apt = shutil.which("apt-get")
    if apt:
        subprocess.run([apt, "install", "-y", "-q", "shellcheck"], capture_output=True, check=False)
    return shutil.which("shellcheck")


def test_install_script_is_valid_bash() -> None:
    script = image.INSTALL_SCRIPT
    assert script.is_file()
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "set -euo pipefail" in text
    for needed in ("papermill", "ipykernel", "rmarkdown", "quarto", "amazon-efs-utils"):
        assert needed in text
    assert "systemctl enable amazon-ssm-agent" in text
    assert "AWSJOBS_VERSIONS" in text


def test_install_script_passes_shellcheck() -> None:
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck is not installed and could not be installed")
    result = subprocess.run(
        [shellcheck, "--shell=bash", str(image.INSTALL_SCRIPT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_command_text_carries_scripts_verbatim_and_is_valid_bash() -> None:
    script = image.install_script_text()
    extra = "#!/bin/bash\nset -e\necho 'AWSJOBS_SCRIPT_EOF'\npip install scikit-learn\n"
    commands = image.build_command(script, extra)
    text = "\n".join(commands)
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert script.rstrip("\n") in text
    assert extra.rstrip("\n") in text
    # The extra script contains the default heredoc marker: a longer one is chosen.
    assert "<<'AWSJOBS_SCRIPT_EOF_'" in text
    assert text.index("install-worker.sh >>") < text.index("extra.sh >>")


def test_parse_versions_takes_the_last_line() -> None:
    out = f'noise\nAWSJOBS_VERSIONS {{"python": "1"}}\nmore\n{VERSIONS_LINE}\n'
    assert image.parse_versions(out) == VERSIONS
    assert image.parse_versions("no versions here") == {}
    assert image.parse_versions("AWSJOBS_VERSIONS {not json") == {}


def test_image_tags_are_valid_tag_values() -> None:
    tags = image.image_tags({"r": "none", "odd": "a,b;c"}, "ami-1", {})
    assert tags["awsjobs:image"] == "true"
    assert tags["awsjobs:version:r"] == "none"
    assert tags["awsjobs:version:odd"] == "a_b_c"


# ------------------------------------------------------------------------------------------
# The build against moto
# ------------------------------------------------------------------------------------------


async def test_build_image_success(
    aws: Any,
    moto_endpoint: str,
    invocation: dict[str, Any],
    instance_profile: str,
    aws_calls: list[tuple[str, dict[str, Any]]],
) -> None:
    ec2 = await aws("ec2")
    ssm = await aws("ssm")
    al2023 = (await ssm.get_parameter(Name=image.AL2023_PARAMETER))["Parameter"]["Value"]
    subnet = (await ec2.describe_subnets())["Subnets"][0]["SubnetId"]
    said: list[str] = []

    result = await image.build_image(
        options(
            moto_endpoint,
            instance_profile=instance_profile,
            subnet_id=subnet,
            extra_script="dnf install -y htop\n",
        ),
        say=said.append,
    )

    # Launch parameters, read back from moto.
    (builder,) = await _instances(ec2, InstanceIds=[result.builder_instance_id])
    assert builder["ImageId"] == al2023 == result.base_ami
    assert builder["InstanceType"] == "t3.large"
    assert builder["SubnetId"] == subnet
    assert builder["MetadataOptions"]["HttpTokens"] == "required"
    # moto drops the profile on terminate: read what RunInstances received instead.
    (run,) = [params for action, params in aws_calls if action == "RunInstances"]
    assert run["IamInstanceProfile.Name"] == ["awsjobs-worker"]
    assert run["BlockDeviceMapping.1.Ebs.VolumeType"] == ["gp3"]
    tags = _tags(builder)
    assert tags["awsjobs:managed"] == "true"
    assert tags["awsjobs:role"] == "image-builder"
    assert tags["awsjobs:owner"] == getpass.getuser()  # so `awsjobs instances` lists it
    attr = await ec2.describe_instance_attribute(
        InstanceId=builder["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    attr = await ec2.describe_instance_attribute(
        InstanceId=builder["InstanceId"], Attribute="userData"
    )
    assert "shutdown -h +" in base64.b64decode(attr["UserData"]["Value"]).decode()

    # The SSM command: the package's install script and the extra script, verbatim.
    (command,) = (await ssm.list_commands(InstanceId=builder["InstanceId"]))["Commands"]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["InstanceIds"] == [builder["InstanceId"]]
    text = "\n".join(command["Parameters"]["commands"])
    assert image.install_script_text().rstrip("\n") in text
    assert "dnf install -y htop" in text

    # The AMI and its tags.
    (ami,) = await _our_images(ec2)
    assert ami["ImageId"] == result.image_id
    assert ami["State"] == "available"
    ami_tags = _tags(ami)
    assert ami_tags["awsjobs:image"] == "true"
    assert ami_tags["awsjobs:base-ami"] == al2023
    for name, value in VERSIONS.items():
        assert ami_tags[f"awsjobs:version:{name}"] == value
    assert result.versions == VERSIONS

    # The builder is gone.
    (builder,) = await _instances(ec2, InstanceIds=[result.builder_instance_id])
    assert builder["State"]["Name"] == "terminated"
    assert any("terminated" in line for line in said)

    # CreateImage keeps the builder's deadline (no reboot) and tags the image and its
    # snapshots in the same call; nothing is tagged after the fact.
    (create,) = [params for action, params in aws_calls if action == "CreateImage"]
    assert create["NoReboot"] == ["true"]
    kinds = {create[k][0] for k in create if k.endswith(".ResourceType")}
    assert kinds == {"image", "snapshot"}
    assert "CreateTags" not in [action for action, _ in aws_calls]
    snapshots = (
        await ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:awsjobs:image", "Values": ["true"]}]
        )
    )["Snapshots"]
    assert [s["SnapshotId"] for s in snapshots] == [
        m["Ebs"]["SnapshotId"] for m in ami["BlockDeviceMappings"] if "Ebs" in m
    ]
    assert tags["awsjobs:expires-at"].endswith("Z")


async def test_build_image_base_ami_and_no_versions(
    aws: Any, moto_endpoint: str, invocation: dict[str, Any]
) -> None:
    ec2 = await aws("ec2")
    invocation["StandardOutputContent"] = "no versions line\n"
    said: list[str] = []
    result = await image.build_image(
        options(moto_endpoint, base_ami="ami-0123456789abcdef0", name="my-worker"),
        say=said.append,
    )
    (builder,) = await _instances(ec2, InstanceIds=[result.builder_instance_id])
    assert builder["ImageId"] == "ami-0123456789abcdef0"
    assert builder["State"]["Name"] == "terminated"
    assert result.name == "my-worker"
    assert result.versions == {}
    assert any("no AWSJOBS_VERSIONS" in line for line in said)


async def _our_snapshots(ec2: Any) -> list[dict[str, Any]]:
    resp = await ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:awsjobs:image", "Values": ["true"]}]
    )
    return list(resp["Snapshots"])


async def test_failed_command_terminates_builder_and_makes_no_image(
    aws: Any, moto_endpoint: str, invocation: dict[str, Any]
) -> None:
    ec2 = await aws("ec2")
    invocation.update(
        Status="Failed",
        StatusDetails="Failed",
        ResponseCode=1,
        StandardOutputContent="",
        StandardErrorContent="[awsjobs] install-worker.sh failed\nNo match for argument: python3",
    )
    with pytest.raises(image.ImageBuildError, match="No match for argument: python3"):
        await image.build_image(options(moto_endpoint))
    (builder,) = await _builders(ec2)
    assert builder["State"]["Name"] == "terminated"
    assert await _our_images(ec2) == []


async def test_interruption_terminates_builder(
    aws: Any, moto_endpoint: str, invocation: dict[str, Any], moto_backend: Any
) -> None:
    ec2 = await aws("ec2")
    invocation.update(Status="InProgress", StatusDetails="InProgress", ResponseCode=-1)
    task = asyncio.create_task(image.build_image(options(moto_endpoint)))
    # Wait (event-driven, bounded only as a safety net) until the install command is running.
    for _ in range(6000):
        if moto_backend("ssm")._commands or task.done():
            break
        await asyncio.sleep(0.02)
    assert not task.done()
    assert moto_backend("ssm")._commands
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (builder,) = await _builders(ec2)
    assert builder["State"]["Name"] == "terminated"
    assert await _our_images(ec2) == []


async def test_send_command_retried_until_agent_registers(
    moto_endpoint: str, invocation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.responses import ActionResult, BaseResponse

    left = {"n": 3}
    original = BaseResponse.call_action

    def call_action(self: Any) -> Any:
        if (self.service_name, self._get_action()) == ("ssm", "SendCommand") and left["n"] > 0:
            left["n"] -= 1
            return self.serialized(ActionResult(InvalidInstanceId()))
        return original(self)

    monkeypatch.setattr(BaseResponse, "call_action", call_action)
    said: list[str] = []
    result = await image.build_image(options(moto_endpoint), say=said.append)
    assert left["n"] == 0
    assert result.image_id.startswith("ami-")
    assert any("SSM agent" in line for line in said)


async def test_agent_never_registers(
    aws: Any,
    moto_endpoint: str,
    invocation: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.core.responses import ActionResult, BaseResponse

    original = BaseResponse.call_action

    def call_action(self: Any) -> Any:
        if (self.service_name, self._get_action()) == ("ssm", "SendCommand"):
            return self.serialized(ActionResult(InvalidInstanceId()))
        return original(self)

    monkeypatch.setattr(BaseResponse, "call_action", call_action)
    ec2 = await aws("ec2")
    with pytest.raises(image.ImageBuildError, match="AmazonSSMManagedInstanceCore"):
        await image.build_image(options(moto_endpoint, agent_timeout_seconds=0))
    (builder,) = await _builders(ec2)
    assert builder["State"]["Name"] == "terminated"


def test_cli_build_image(
    moto_endpoint: str,
    invocation: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    extra = tmp_path / "extra.sh"
    extra.write_text("echo extra\n")
    code = main(
        [
            "build-image",
            "--endpoint-url",
            moto_endpoint,
            "--region",
            "us-east-1",
            "--extra-script",
            str(extra),
            "--base-ami",
            "ami-0123456789abcdef0",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    ami = out.strip()
    assert ami.startswith("ami-")
    assert f'c.EC2Backend.image_id = "{ami}"' in err


def test_cli_build_image_failure_exit_code(
    moto_endpoint: str, invocation: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    invocation.update(Status="Failed", ResponseCode=2, StandardErrorContent="boom")
    code = main(["build-image", "--endpoint-url", moto_endpoint, "--region", "us-east-1"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "boom" in err
    assert "terminated" in err


def test_cli_build_image_missing_extra_script(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build-image", "--extra-script", "/nonexistent/extra.sh"])
    assert code == 2
    assert "--extra-script" in capsys.readouterr().err


# Defined outside moto's package, so moto serialises it as a proper SSM error
# (docs/aws-testing.md §6.3).
def _invalid_instance_id_class() -> type:
    from moto.core.exceptions import ServiceException

    class InvalidInstanceIdError(ServiceException):
        code = "InvalidInstanceId"
        message = "Instances not in a valid state for account"

    return InvalidInstanceIdError


def InvalidInstanceId() -> Any:
    return _invalid_instance_id_class()()


# ------------------------------------------------------------------------------------------
# The build on the simulated AWS (tests/awssim)
# ------------------------------------------------------------------------------------------

# Stands for install-worker.sh: quick, and prints the versions line.
TINY_INSTALL = "#!/bin/bash\necho '[awsjobs] installing'\necho '" + VERSIONS_LINE + "'\n"


def sim_options(sim: SimulatedAWS, **kw: Any) -> image.BuildOptions:
    defaults: dict[str, Any] = {
        "base_ami": "ami-12c6146b",
        "install_script": TINY_INSTALL,
        "poll_seconds": 0.05,
        "wait_timeout_seconds": 60.0,
        "terminate_timeout_seconds": 30.0,
    }
    defaults.update(kw)
    return options(sim.endpoint_url, **defaults)


async def _leftovers(sim: SimulatedAWS) -> tuple[list[str], list[str]]:
    """The build's images and snapshots still there (asked once they are visible)."""
    from moto_support import moto_clients

    async with moto_clients(sim.endpoint_url) as make:
        ec2 = await make("ec2")
        images = [i["ImageId"] for i in await _our_images(ec2)]
        snapshots = [s["SnapshotId"] for s in await _our_snapshots(ec2)]
    return images, snapshots


async def test_builder_keeps_its_deadline_through_create_image(simulated_aws: SimulatedAWS):
    sim = simulated_aws
    # A new AMI id is unknown to EC2 for a while (as on AWS): not a failure, and never tagged
    # after the fact.
    sim.configure({"consistency": {"image_not_found_seconds": 0.5}})
    seen: dict[str, Any] = {}

    def say(line: str) -> None:
        if "is being created" in line:  # CreateImage has answered
            (machine,) = sim.state()["instances"]
            sandbox = Path(machine["sandbox"])
            seen.update(
                machine,
                deadline_on_disk=(sandbox / "var/lib/awsjobs/deadline").exists(),
                rearm_on_disk=any((sandbox / "var/lib/cloud/scripts/per-boot").iterdir()),
            )

    result = await image.build_image(sim_options(sim), say=say)

    assert result.image_id.startswith("ami-") and result.versions == VERSIONS
    # The builder armed its deadline at boot, and still had it scheduled once CreateImage
    # had answered: no reboot cancelled it.
    assert seen["shim_calls"][0].startswith("shutdown -h +")
    assert seen["shutdown_scheduled_in"] is not None
    assert sim.record.events["reboot"] == 0
    # The image does not carry the builder's deadline (a worker booted from it would power
    # off at once): the install command removed it before CreateImage.
    assert not seen["deadline_on_disk"] and not seen["rearm_on_disk"]
    # The image and its snapshot were tagged by CreateImage itself.
    assert sim.record.calls.get("ec2:CreateTags", 0) == 0
    images, snapshots = await _leftovers(sim)
    assert images == [result.image_id] and len(snapshots) == 1
    (life,) = sim.record.to_json()["instances"]
    assert tag_names.EXPIRES_AT in life["tags"]
    assert life["state_reason"] == "Client.UserInitiatedShutdown"  # terminated by the build


async def test_an_image_not_available_in_time_is_discarded(simulated_aws: SimulatedAWS):
    sim = simulated_aws
    # The image stays unknown (pending) past the build's image timeout: the build fails, and
    # its image is deregistered and its snapshots deleted once EC2 knows the id. EC2 learns it
    # once the discard was refused for it (sim.settle): with a window of seconds, a loaded
    # machine could find the image available before the build's timeout.
    sim.configure({"consistency": {"image_not_found_seconds": 600}})
    said: list[str] = []
    build = asyncio.create_task(
        image.build_image(sim_options(sim, image_timeout_seconds=0.3), say=said.append)
    )

    async def refused_or_over() -> bool:
        refused = sim.record.faults_by_action["ec2:DeregisterImage:InvalidAMIID.NotFound"]
        return refused > 0 or build.done()

    await eventually(refused_or_over, timeout=120)
    made = [line.split()[1] for line in said if "is being created" in line]
    sim.settle(*made)
    with pytest.raises(image.ImageBuildError, match="not available within"):
        await build
    assert await _leftovers(sim) == ([], [])
    assert any("deregistered" in line for line in said)
    (life,) = sim.record.to_json()["instances"]
    assert life["terminated_at"] is not None


async def test_an_interrupted_image_wait_discards_the_image(simulated_aws: SimulatedAWS):
    sim = simulated_aws
    sim.configure({"consistency": {"image_not_found_seconds": 1.0}})
    created = asyncio.Event()

    def say(line: str) -> None:
        if "is being created" in line:
            created.set()

    task = asyncio.create_task(image.build_image(sim_options(sim), say=say))
    await asyncio.wait_for(created.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _leftovers(sim) == ([], [])


# -- `awsjobs build-image --gpu` ---------------------------------------------------------------


def test_gpu_build_command_runs_the_install_script_with_its_gpu_flag() -> None:
    script = image.install_script_text()
    text = "\n".join(image.build_command(script, None, gpu=True))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert f"bash {image.REMOTE_DIR}/install-worker.sh --gpu >>" in text
    assert "nvidia-driver:open-dkms" in text and "cuda-toolkit" in text  # the script's GPU steps
    plain = "\n".join(image.build_command(script, None))
    assert f"bash {image.REMOTE_DIR}/install-worker.sh >>" in plain
    assert "install-worker.sh --gpu" not in plain


def test_gpu_builder_type_follows_the_architecture() -> None:
    gpu = image.BuildOptions(gpu=True)
    assert image.builder_instance_type(gpu, "x86_64") == "g4dn.xlarge"
    assert image.builder_instance_type(gpu, "arm64") == "g5g.xlarge"
    assert image.builder_instance_type(gpu, None) == "g4dn.xlarge"
    assert image.builder_instance_type(image.BuildOptions(), "x86_64") == "t3.large"
    asked = image.BuildOptions(gpu=True, instance_type="g6.xlarge")
    assert image.builder_instance_type(asked, "x86_64") == "g6.xlarge"


async def test_gpu_build_on_a_gpu_builder(
    aws: Any, moto_endpoint: str, invocation: dict[str, Any], instance_profile: str
) -> None:
    ec2 = await aws("ec2")
    ssm = await aws("ssm")
    said: list[str] = []
    result = await image.build_image(
        options(moto_endpoint, instance_type=None, gpu=True, instance_profile=instance_profile),
        say=said.append,
    )
    (builder,) = await _instances(ec2, InstanceIds=[result.builder_instance_id])
    assert builder["InstanceType"] == "g4dn.xlarge"
    described = await ec2.describe_instance_types(InstanceTypes=["g4dn.xlarge"])
    assert described["InstanceTypes"][0]["GpuInfo"]["Gpus"][0]["Name"] == "T4"
    assert f"Builder instance {builder['InstanceId']} (g4dn.xlarge) launched" in said
    commands = (await ssm.list_commands())["Commands"]
    sent = "\n".join(commands[-1]["Parameters"]["commands"])
    assert "install-worker.sh --gpu >>" in sent


def test_cli_build_image_gpu_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[image.BuildOptions] = []

    async def fake_build(options: image.BuildOptions, say: Any = None) -> Any:
        seen.append(options)
        raise image.ImageBuildError("stop here")

    monkeypatch.setattr(image, "build_image", fake_build)
    main(["build-image", "--gpu", "--region", "us-east-1"])
    assert seen[0].gpu is True and seen[0].instance_type is None
