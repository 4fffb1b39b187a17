"""`awsjobs build-image`: build the EC2 worker image (AMI) the EC2 backend launches jobs from.

1. launch a builder instance from the current Amazon Linux 2023 image (SSM public parameter)
   or `base_ami`, tagged `awsjobs:managed=true`, `awsjobs:role=image-builder`, with a
   self-shutdown deadline and `InstanceInitiatedShutdownBehavior=terminate` as a last resort;
2. run `worker/install-worker.sh` (+ an optional extra script) on it through SSM
   `AWS-RunShellScript`, retrying SendCommand while the agent is not yet registered;
3. wait for the command, read the `AWSJOBS_VERSIONS {json}` line of its output;
4. `CreateImage`, tag the AMI `awsjobs:image=true` plus the versions, wait until available;
5. terminate the builder in every outcome (success, failure, Ctrl-C, cancellation) and confirm.

Talks to AWS through aiobotocore only (the EC2 backend's `AWSClients`), never boto3.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from .aws.clients import AWSClients, error_code, error_message

AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
INSTALL_SCRIPT = Path(__file__).parent / "worker" / "install-worker.sh"
VERSIONS_PREFIX = "AWSJOBS_VERSIONS "
REMOTE_DIR = "/opt/awsjobs-build"
REMOTE_LOG = "/var/log/awsjobs-build-image.log"
TAG_VALUE_RE = re.compile(r"[^\w .:/=+\-@]")
COMMAND_DONE = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"})

Say = Callable[[str], None]


class ImageBuildError(Exception):
    """The build failed; the message says where (the builder is terminated regardless)."""


@dataclass(frozen=True)
class BuildOptions:
    base_ami: str | None = None
    extra_script: str | None = None  # the text of a bash script run after the install script
    instance_type: str = "t3.large"
    region: str | None = None
    subnet_id: str | None = None
    instance_profile: str | None = None  # name or ARN; needs AmazonSSMManagedInstanceCore
    security_group_ids: tuple[str, ...] = ()
    volume_size_gib: int = 30
    wait_timeout_seconds: float = 3600.0  # the install command's limit
    agent_timeout_seconds: float = 600.0  # how long SendCommand may wait for the SSM agent
    image_timeout_seconds: float = 3600.0  # how long CreateImage may take to be available
    terminate_timeout_seconds: float = 600.0
    poll_seconds: float = 10.0
    name: str | None = None
    endpoint_url: str | None = None  # tests: moto
    install_script: str | None = None  # default: the package's install-worker.sh
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    image_id: str
    name: str
    region: str
    base_ami: str
    builder_instance_id: str
    versions: dict[str, str]
    tags: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def install_script_text() -> str:
    return INSTALL_SCRIPT.read_text(encoding="utf-8")


def _heredoc(path: str, text: str) -> list[str]:
    """Lines that write `text` to `path` verbatim (a quoted heredoc: no expansion)."""
    marker = "AWSJOBS_SCRIPT_EOF"
    while marker in text:
        marker += "_"
    return [f"cat > {path} <<'{marker}'", *text.rstrip("\n").split("\n"), marker]


def build_command(install_script: str, extra_script: str | None) -> list[str]:
    """The `commands` of the AWS-RunShellScript document.

    The scripts' own output goes to a log file on the builder: SSM keeps only the first 24,000
    characters of output, and the versions line comes last. What comes back is the end of that
    log (on failure) or the versions line (on success)."""
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        f"mkdir -p {REMOTE_DIR}",
        *_heredoc(f"{REMOTE_DIR}/install-worker.sh", install_script),
    ]
    steps = [f"{REMOTE_DIR}/install-worker.sh"]
    if extra_script:
        lines += _heredoc(f"{REMOTE_DIR}/extra.sh", extra_script)
        steps.append(f"{REMOTE_DIR}/extra.sh")
    for step in steps:
        lines += [
            f"echo '[awsjobs] running {step}' >> {REMOTE_LOG}",
            f"if ! bash {step} >> {REMOTE_LOG} 2>&1; then",
            f"  echo '[awsjobs] {step} failed; the end of {REMOTE_LOG}:' >&2",
            f"  tail -n 60 {REMOTE_LOG} >&2",
            "  exit 1",
            "fi",
        ]
    lines += [
        f"tail -n 5 {REMOTE_LOG}",
        f"grep '^{VERSIONS_PREFIX}' {REMOTE_LOG} | tail -n 1",
    ]
    return lines


def parse_versions(output: str) -> dict[str, str]:
    """The last `AWSJOBS_VERSIONS {json}` line of the command's output ({} when absent)."""
    for line in reversed(output.splitlines()):
        if line.startswith(VERSIONS_PREFIX):
            try:
                data = json.loads(line[len(VERSIONS_PREFIX) :])
            except ValueError:
                return {}
            if isinstance(data, dict):
                return {str(k): str(v) for k, v in data.items()}
    return {}


def _tag_value(value: str) -> str:
    return TAG_VALUE_RE.sub("_", value)[:256] or "none"


def _user_name() -> str:
    try:
        return TAG_VALUE_RE.sub("_", getpass.getuser())[:255]
    except Exception:
        return "unknown"


def _lab_version() -> str:
    try:
        from importlib.metadata import version

        return version("awsjobs-lab")
    except Exception:
        return "dev"


def image_tags(versions: dict[str, str], base_ami: str, extra: dict[str, str]) -> dict[str, str]:
    tags = {
        "awsjobs:image": "true",
        "awsjobs:base-ami": base_ami,
        "awsjobs:lab-version": _lab_version(),
    }
    for name, value in sorted(versions.items()):
        key = "awsjobs:version:" + re.sub(r"[^\w.\-]", "_", name)
        tags[key[:128]] = _tag_value(value)
    tags.update(extra)
    return tags


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


async def _resolve_region(options: BuildOptions, session: AioSession) -> str:
    region = options.region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
    if not region:
        raise ImageBuildError("No AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return str(region)


async def build_image(
    options: BuildOptions,
    *,
    say: Say | None = None,
    session: AioSession | None = None,
) -> BuildResult:
    """Build the worker AMI; see the module docstring. Raises `ImageBuildError` on failure.
    The builder instance is terminated before this returns or raises, whatever happened."""
    say = say or (lambda line: None)
    session = session or get_session()
    region = await _resolve_region(options, session)
    clients = AWSClients(region=region, endpoint_url=options.endpoint_url or "", session=session)
    build_id = uuid.uuid4().hex[:12]
    builder: str | None = None
    try:
        ec2 = await clients.ec2()
        ssm = await clients.ssm()
        try:
            if not options.instance_profile:
                say(
                    "Note: no --instance-profile; the builder's SSM agent can only register if "
                    "the account has Default Host Management Configuration enabled"
                )
            base_ami = options.base_ami or await _latest_al2023(ssm)
            say(f"Base image: {base_ami}")
            builder = await _launch_builder(ec2, options, base_ami, build_id)
            say(f"Builder instance {builder} ({options.instance_type}) launched")
            script = options.install_script or install_script_text()
            command_id = await _send_command(
                ssm, builder, build_command(script, options.extra_script), options, say
            )
            say(f"Install command {command_id} sent; waiting (this takes 10-20 minutes)")
            output = await _wait_command(ssm, command_id, builder, options)
            versions = parse_versions(output)
            if not versions:
                say("Warning: the install script printed no AWSJOBS_VERSIONS line")
            else:
                say("Installed: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
            name = options.name or time.strftime("awsjobs-worker-%Y%m%d-%H%M%S", time.gmtime())
            tags = image_tags(versions, base_ami, options.extra_tags)
            image_id = await _create_image(ec2, builder, name, tags, options, say)
            return BuildResult(
                image_id=image_id,
                name=name,
                region=region,
                base_ami=base_ami,
                builder_instance_id=builder,
                versions=versions,
                tags=tags,
            )
        except ClientError as e:
            raise ImageBuildError(f"AWS refused: {error_message(e)}") from e
        except BotoCoreError as e:  # no credentials, no network, ...
            raise ImageBuildError(f"AWS: {e}") from e
        finally:
            # Runs on success, on failure and on cancellation (Ctrl-C under asyncio.run).
            await _uninterruptible(_terminate_builders(ec2, build_id, builder, options, say), say)
    finally:
        await _uninterruptible(clients.close(), say)


async def _uninterruptible(coro: Coroutine[Any, Any, None], say: Say) -> None:
    """Run cleanup to its end even if this task is cancelled again meanwhile (a second
    cancellation is absorbed; the first one keeps propagating after the cleanup)."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                say("Still cleaning up (terminating the builder); please wait")
    task.result()


async def _latest_al2023(ssm: Any) -> str:
    resp = await ssm.get_parameter(Name=AL2023_PARAMETER)
    return str(resp["Parameter"]["Value"])


async def _root_device(ec2: Any, image_id: str) -> str:
    try:
        images = (await ec2.describe_images(ImageIds=[image_id])).get("Images", [])
    except ClientError:
        images = []
    if images and images[0].get("RootDeviceName"):
        return str(images[0]["RootDeviceName"])
    return "/dev/xvda"  # Amazon Linux's root device


async def _launch_builder(ec2: Any, options: BuildOptions, base_ami: str, build_id: str) -> str:
    tags = _tag_list(
        {
            "Name": "awsjobs-image-builder",
            "awsjobs:managed": "true",
            "awsjobs:role": "image-builder",
            "awsjobs:build-id": build_id,
            # So `awsjobs instances` lists a builder, and `awsjobs stop-instances` may end it.
            "awsjobs:owner": _user_name(),
        }
    )
    # A deadline on the box itself, in case this process dies without cleaning up: it shuts
    # down (and so terminates) after the longest the build may take. CreateImage reboots the
    # instance, which clears the pending shutdown, so it never cuts the image short.
    deadline_minutes = int((options.agent_timeout_seconds + options.wait_timeout_seconds) / 60 + 30)
    user_data = f"#!/bin/bash\nshutdown -h +{deadline_minutes} 'awsjobs image builder deadline'\n"
    params: dict[str, Any] = {
        "ImageId": base_ami,
        "InstanceType": options.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": f"awsjobs-build-{build_id}",
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        "BlockDeviceMappings": [
            {
                "DeviceName": await _root_device(ec2, base_ami),
                "Ebs": {
                    "VolumeSize": options.volume_size_gib,
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                },
            }
        ],
        "UserData": user_data,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if options.instance_profile:
        key = "Arn" if options.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: options.instance_profile}
    if options.subnet_id:
        params["SubnetId"] = options.subnet_id
    if options.security_group_ids:
        params["SecurityGroupIds"] = list(options.security_group_ids)
    resp = await ec2.run_instances(**params)
    return str(resp["Instances"][0]["InstanceId"])


async def _send_command(
    ssm: Any, instance_id: str, commands: list[str], options: BuildOptions, say: Say
) -> str:
    """SendCommand, retried on InvalidInstanceId (what SSM says until the agent registers)."""
    deadline = time.monotonic() + options.agent_timeout_seconds
    waited = False
    while True:
        try:
            resp = await ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName="AWS-RunShellScript",
                Comment="awsjobs build-image",
                TimeoutSeconds=600,  # to start delivering; the run's own limit is below
                Parameters={
                    "commands": commands,
                    "executionTimeout": [str(int(options.wait_timeout_seconds))],
                },
            )
            return str(resp["Command"]["CommandId"])
        except ClientError as e:
            if error_code(e) != "InvalidInstanceId":
                raise
            if time.monotonic() >= deadline:
                raise ImageBuildError(
                    f"The SSM agent of {instance_id} did not register within "
                    f"{options.agent_timeout_seconds:g} s. Does its instance profile have "
                    "AmazonSSMManagedInstanceCore (--instance-profile), and can the subnet "
                    "reach SSM?"
                ) from e
            if not waited:
                say("Waiting for the builder's SSM agent to register")
                waited = True
            await asyncio.sleep(options.poll_seconds)


async def _wait_command(ssm: Any, command_id: str, instance_id: str, options: BuildOptions) -> str:
    deadline = time.monotonic() + options.wait_timeout_seconds + 300
    while True:
        try:
            inv = await ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as e:
            if error_code(e) != "InvocationDoesNotExist":
                raise
            inv = {"Status": "Pending"}
        status = str(inv.get("Status", ""))
        if status in COMMAND_DONE:
            out = str(inv.get("StandardOutputContent") or "")
            if status == "Success":
                return out
            err = str(inv.get("StandardErrorContent") or "").strip()
            detail = err or out.strip() or "(no output)"
            raise ImageBuildError(
                f"The install command {status.lower()} (exit code "
                f"{inv.get('ResponseCode', '?')}):\n{detail[-4000:]}"
            )
        if time.monotonic() >= deadline:
            raise ImageBuildError(
                f"The install command {command_id} did not finish within "
                f"{options.wait_timeout_seconds:g} s (last status: {status or 'unknown'})"
            )
        await asyncio.sleep(options.poll_seconds)


async def _create_image(
    ec2: Any,
    instance_id: str,
    name: str,
    tags: dict[str, str],
    options: BuildOptions,
    say: Say,
) -> str:
    resp = await ec2.create_image(
        InstanceId=instance_id,
        Name=name,
        Description="awsjobs-lab worker image (python, papermill, R, rmarkdown, quarto, efs)",
    )
    image_id = str(resp["ImageId"])
    await ec2.create_tags(Resources=[image_id], Tags=_tag_list({"Name": name, **tags}))
    say(f"Image {image_id} ({name}) is being created; waiting until it is available")
    deadline = time.monotonic() + options.image_timeout_seconds
    while True:
        images = (await ec2.describe_images(ImageIds=[image_id])).get("Images", [])
        state = str(images[0].get("State", "")) if images else "pending"
        if state == "available":
            return image_id
        if state in ("failed", "error", "invalid", "deregistered"):
            reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
            raise ImageBuildError(f"Image {image_id} is {state}: {reason}")
        if time.monotonic() >= deadline:
            raise ImageBuildError(
                f"Image {image_id} was not available within "
                f"{options.image_timeout_seconds:g} s (state {state}); it may still complete: "
                "see the EC2 console, AMIs"
            )
        await asyncio.sleep(options.poll_seconds)


async def _terminate_builders(
    ec2: Any, build_id: str, known: str | None, options: BuildOptions, say: Say
) -> None:
    """Terminate this build's builder(s) (found by id, and by the build's tag in case a launch
    was cut short before its id came back) and confirm they are shutting down or gone."""
    ids: set[str] = {known} if known else set()
    try:
        resp = await ec2.describe_instances(
            Filters=[
                {"Name": "tag:awsjobs:build-id", "Values": [build_id]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"],
                },
            ]
        )
        for reservation in resp.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                ids.add(str(inst["InstanceId"]))
    except (ClientError, BotoCoreError) as e:
        say(f"Warning: could not look for builder instances: {error_message(e)}")
    if not ids:
        return
    wanted = sorted(ids)
    deadline = time.monotonic() + options.terminate_timeout_seconds
    while True:
        try:
            await ec2.terminate_instances(InstanceIds=wanted)
            resp = await ec2.describe_instances(InstanceIds=wanted)
            states = {
                str(i["InstanceId"]): str(i["State"]["Name"])
                for r in resp.get("Reservations", [])
                for i in r.get("Instances", [])
            }
            if all(states.get(i, "terminated") in ("shutting-down", "terminated") for i in wanted):
                say(f"Builder {', '.join(wanted)} terminated")
                return
        except (ClientError, BotoCoreError) as e:
            if error_code(e) == "InvalidInstanceID.NotFound":
                return
            say(f"Warning: terminating the builder failed: {error_message(e)}; retrying")
        if time.monotonic() >= deadline:
            say(
                f"WARNING: could not confirm that builder {', '.join(wanted)} is terminated; "
                "terminate it by hand (EC2 console, or `awsjobs stop-instances`)"
            )
            return
        await asyncio.sleep(min(options.poll_seconds, 5.0))
