"""`awsjobs build-image`: build the EC2 worker image (AMI) the EC2 backend launches jobs from.

1. launch a builder instance from the current Amazon Linux 2023 image (SSM public parameter)
   or `base_ami`, tagged `awsjobs:managed=true`, `awsjobs:role=image-builder`, with a
   self-shutdown deadline and `InstanceInitiatedShutdownBehavior=terminate` as a last resort;
2. run `worker/install-worker.sh` (+ an optional extra script) on it through SSM
   `AWS-RunShellScript`, retrying SendCommand while the agent is not yet registered;
3. wait for the command, read the `AWSJOBS_VERSIONS {json}` line of its output;
4. `CreateImage`, tag the AMI `awsjobs:image=true` plus the versions, wait until available;
5. terminate the builder in every outcome (success, failure, Ctrl-C, cancellation) and confirm.

It launches, sends and terminates through the same AWS layer as the EC2 backend (`launch`,
`ssm`, `instances`, `tags`); what is its own is the install script, CreateImage and the waits.
Talks to AWS through aiobotocore only (the EC2 backend's `AWSClients`), never boto3.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from . import instances, ssm, tags
from .clients import AWSClients
from .errors import AWS_ERRORS, error_message
from .launch import DEFAULT_ROOT_DEVICE, LaunchSpec, describe_image, run_instances_parameters

AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
INSTALL_SCRIPT = Path(__file__).parent.parent / "worker" / "install-worker.sh"
VERSIONS_PREFIX = "AWSJOBS_VERSIONS "
REMOTE_DIR = "/opt/awsjobs-build"
REMOTE_LOG = "/var/log/awsjobs-build-image.log"
BUILD_COMMENT = "awsjobs build-image"

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


def _lab_version() -> str:
    try:
        from importlib.metadata import version

        return version("awsjobs-lab")
    except Exception:
        return "dev"


def image_tags(versions: dict[str, str], base_ami: str, extra: dict[str, str]) -> dict[str, str]:
    found = {
        tags.IMAGE: tags.TRUE,
        tags.BASE_AMI: base_ami,
        tags.LAB_VERSION: _lab_version(),
    }
    for name, value in sorted(versions.items()):
        found[tags.version_key(name)] = tags.tag_value(value) or "none"
    found.update(extra)
    return found


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
        ssm_client = await clients.ssm()
        try:
            if not options.instance_profile:
                say(
                    "Note: no --instance-profile; the builder's SSM agent can only register if "
                    "the account has Default Host Management Configuration enabled"
                )
            base_ami = options.base_ami or await _latest_al2023(ssm_client)
            say(f"Base image: {base_ami}")
            builder = await _launch_builder(ec2, options, base_ami, build_id)
            say(f"Builder instance {builder} ({options.instance_type}) launched")
            script = options.install_script or install_script_text()
            command_id = await _send_command(
                ssm_client, builder, build_command(script, options.extra_script), options, say
            )
            say(f"Install command {command_id} sent; waiting (this takes 10-20 minutes)")
            output = await _wait_command(ssm_client, command_id, builder, options)
            versions = parse_versions(output)
            if not versions:
                say("Warning: the install script printed no AWSJOBS_VERSIONS line")
            else:
                say("Installed: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
            name = options.name or time.strftime("awsjobs-worker-%Y%m%d-%H%M%S", time.gmtime())
            ami_tags = image_tags(versions, base_ami, options.extra_tags)
            image_id = await _create_image(ec2, builder, name, ami_tags, options, say)
            return BuildResult(
                image_id=image_id,
                name=name,
                region=region,
                base_ami=base_ami,
                builder_instance_id=builder,
                versions=versions,
                tags=ami_tags,
            )
        except ClientError as e:
            raise ImageBuildError(f"AWS refused: {error_message(e)}") from e
        except AWS_ERRORS as e:  # no credentials, no network, ...
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


async def _latest_al2023(ssm_client: Any) -> str:
    resp = await ssm_client.get_parameter(Name=AL2023_PARAMETER)
    return str(resp["Parameter"]["Value"])


async def _launch_builder(ec2: Any, options: BuildOptions, base_ami: str, build_id: str) -> str:
    # A deadline on the box itself, in case this process dies without cleaning up: it shuts
    # down (and so terminates) after the longest the build may take. CreateImage reboots the
    # instance, which clears the pending shutdown, so it never cuts the image short.
    deadline_minutes = int((options.agent_timeout_seconds + options.wait_timeout_seconds) / 60 + 30)
    user_data = f"#!/bin/bash\nshutdown -h +{deadline_minutes} 'awsjobs image builder deadline'\n"
    image = await describe_image(ec2, base_ami)
    spec = LaunchSpec(
        image_id=base_ami,
        instance_type=options.instance_type,
        user_data=user_data,
        tags={
            tags.NAME: "awsjobs-image-builder",
            tags.MANAGED: tags.TRUE,
            tags.ROLE: tags.ROLE_IMAGE_BUILDER,
            tags.BUILD_ID: build_id,
            # So `awsjobs instances` lists a builder, and `awsjobs stop-instances` may end it.
            tags.OWNER: tags.owner_tag_value(tags.user_name()),
        },
        client_token=f"awsjobs-build-{build_id}",
        root_device=(image or {}).get("RootDeviceName") or DEFAULT_ROOT_DEVICE,
        root_volume_gib=options.volume_size_gib,
        subnet_id=options.subnet_id,
        security_group_ids=options.security_group_ids,
        instance_profile=options.instance_profile or "",
    )
    resp = await ec2.run_instances(**run_instances_parameters(spec))
    return str(resp["Instances"][0]["InstanceId"])


async def _send_command(
    ssm_client: Any, instance_id: str, commands: list[str], options: BuildOptions, say: Say
) -> str:
    """SendCommand, retried while the builder's SSM agent is not yet registered."""
    try:
        command_id = await ssm.send_until_registered(
            ssm_client,
            instance_id,
            lambda: ssm.shell_script_parameters(
                instance_id=instance_id,
                commands=commands,
                execution_seconds=options.wait_timeout_seconds,
                comment=BUILD_COMMENT,
            ),
            timeout_seconds=options.agent_timeout_seconds,
            pause=lambda attempt: options.poll_seconds,
            on_first_wait=lambda: say("Waiting for the builder's SSM agent to register"),
        )
    except ssm.AgentNotRegistered as e:
        raise ImageBuildError(
            f"The SSM agent of {instance_id} did not register within "
            f"{options.agent_timeout_seconds:g} s. Does its instance profile have "
            "AmazonSSMManagedInstanceCore (--instance-profile), and can the subnet "
            "reach SSM?"
        ) from e
    assert command_id is not None  # nothing asks it to give up
    return command_id


async def _wait_command(
    ssm_client: Any, command_id: str, instance_id: str, options: BuildOptions
) -> str:
    deadline = time.monotonic() + options.wait_timeout_seconds + 300
    while True:
        inv = await ssm.get_invocation(ssm_client, command_id, instance_id) or {}
        status = str(inv.get("Status", ""))
        if ssm.is_done(inv):
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
    ami_tags: dict[str, str],
    options: BuildOptions,
    say: Say,
) -> str:
    resp = await ec2.create_image(
        InstanceId=instance_id,
        Name=name,
        Description="awsjobs-lab worker image (python, papermill, R, rmarkdown, quarto, efs)",
    )
    image_id = str(resp["ImageId"])
    await ec2.create_tags(Resources=[image_id], Tags=tags.tag_list({tags.NAME: name, **ami_tags}))
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
        found = await instances.describe_instances(
            ec2,
            [
                tags.tag_filter(tags.BUILD_ID, build_id),
                instances.state_filter(instances.UNFINISHED),
            ],
        )
        ids.update(found)
    except AWS_ERRORS as e:
        say(f"Warning: could not look for builder instances: {error_message(e)}")
    if not ids:
        return
    wanted = sorted(ids)
    deadline = time.monotonic() + options.terminate_timeout_seconds
    while True:
        try:
            if not await instances.terminate_and_check(ec2, wanted, attempts=1):
                say(f"Builder {', '.join(wanted)} terminated")
                return
        except AWS_ERRORS as e:
            say(f"Warning: terminating the builder failed: {error_message(e)}; retrying")
        if time.monotonic() >= deadline:
            say(
                f"WARNING: could not confirm that builder {', '.join(wanted)} is terminated; "
                "terminate it by hand (EC2 console, or `awsjobs stop-instances`)"
            )
            return
        await asyncio.sleep(min(options.poll_seconds, 5.0))
