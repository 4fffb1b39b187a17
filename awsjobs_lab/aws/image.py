"""`awsjobs build-image`: build the EC2 worker image (AMI) the EC2 backend launches jobs from.

1. launch a builder instance from the current Amazon Linux 2023 image (SSM public parameter)
   or `base_ami`, tagged `awsjobs:managed=true`, `awsjobs:role=image-builder` and
   `awsjobs:expires-at`, with `InstanceInitiatedShutdownBehavior=terminate` and the workers'
   self-shutdown deadline (re-armed at every boot: `userdata.deadline_commands`) as a last
   resort, and so `awsjobs sweep` ends it if everything else failed;
2. run `worker/install-worker.sh` (+ an optional extra script) on it through SSM
   `AWS-RunShellScript`, retrying SendCommand while the agent is not yet registered; its last
   step removes the deadline from the disk (a worker booted from the image must not inherit it)
   and syncs the file systems;
3. wait for the command, read the `AWSJOBS_VERSIONS {json}` line of its output;
4. `CreateImage` with `NoReboot` (the default reboot would cancel the builder's scheduled
   shutdown), the AMI and its snapshots tagged in the same call (`awsjobs:image=true`, the
   versions, the build's id: a new AMI id is not visible at once, so no CreateTags on it);
   wait until it is available, taking `InvalidAMIID.NotFound` right after CreateImage as
   pending;
5. terminate the builder in every outcome (success, failure, Ctrl-C, cancellation) and confirm;
   unless the build succeeded, deregister its image and delete its snapshots (found by id and
   by the build's tag, in case CreateImage's answer was lost).

It launches, sends and terminates through the same AWS layer as the EC2 backend (`launch`,
`ssm`, `instances`, `tags`); what is its own is the install script, CreateImage and the waits.
Talks to AWS through aiobotocore only (the EC2 backend's `AWSClients`), never boto3.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError

from . import instances, ssm, tags
from .clients import AWSClients
from .errors import AWS_ERRORS, error_code, error_message
from .launch import DEFAULT_ROOT_DEVICE, LaunchSpec, describe_image, run_instances_parameters
from .userdata import deadline_commands, forget_deadline_commands

AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
INSTALL_SCRIPT = Path(__file__).parent.parent / "worker" / "install-worker.sh"
VERSIONS_PREFIX = "AWSJOBS_VERSIONS "
REMOTE_DIR = "/var/lib/awsjobs/build"
REMOTE_LOG = "/var/log/awsjobs-build-image.log"
BUILD_COMMENT = "awsjobs build-image"
BUILDER_DEADLINE_REASON = "awsjobs: image builder deadline"
BUILDER_MARGIN_MINUTES = 30  # on top of the longest the build's steps may take
IMAGE_NOT_FOUND = "InvalidAMIID.NotFound"  # also a new AMI id, for a while
IMAGE_GONE = "InvalidAMIID.Unavailable"  # deregistered already
SNAPSHOT_NOT_FOUND = "InvalidSnapshot.NotFound"
SNAPSHOT_IN_USE = "InvalidSnapshot.InUse"  # its image is not deregistered yet
FAILED_IMAGE_STATES = frozenset({"failed", "error", "invalid", "deregistered"})
DEFAULT_BUILDER_TYPE = "t3.large"
# `--gpu`: the NVIDIA driver is built (DKMS) against the builder's own kernel, and its check
# needs a GPU, so the builder is the smallest NVIDIA type of the image's architecture.
GPU_BUILDER_TYPES = {"x86_64": "g4dn.xlarge", "arm64": "g5g.xlarge"}
GPU_FLAG = "--gpu"  # install-worker.sh: also the NVIDIA driver and the CUDA toolkit

Say = Callable[[str], None]


class ImageBuildError(Exception):
    """The build failed; the message says where (the builder is terminated regardless)."""


class ImageNotAvailable(Exception):
    """The new image failed, or was not available in time."""


@dataclass(frozen=True)
class BuildOptions:
    base_ami: str | None = None
    extra_script: str | None = None  # the text of a bash script run after the install script
    instance_type: str | None = None  # default: DEFAULT_BUILDER_TYPE, or a GPU type (gpu)
    gpu: bool = False  # the NVIDIA driver and CUDA too, built on a GPU instance
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


def builder_instance_type(options: BuildOptions, architecture: str | None) -> str:
    """The builder's type: the one asked for, else a GPU type of the image's architecture
    (`gpu`), else the default."""
    if options.instance_type:
        return options.instance_type
    if options.gpu:
        return GPU_BUILDER_TYPES.get(architecture or "x86_64", GPU_BUILDER_TYPES["x86_64"])
    return DEFAULT_BUILDER_TYPE


def build_command(install_script: str, extra_script: str | None, *, gpu: bool = False) -> list[str]:
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
    steps = [f"{REMOTE_DIR}/install-worker.sh{' ' + GPU_FLAG if gpu else ''}"]
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
        "# The image must not carry this builder's deadline; NoReboot: flush to disk first.",
        *forget_deadline_commands().splitlines(),
        "sync",
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


@dataclass
class _Build:
    """What one build has made so far: what its cleanup must end or discard."""

    id: str
    builder: str | None = None
    image_requested: bool = False  # CreateImage was sent (its answer may have been lost)
    image_id: str | None = None
    succeeded: bool = False


async def build_image(
    options: BuildOptions,
    *,
    say: Say | None = None,
    session: AioSession | None = None,
) -> BuildResult:
    """Build the worker AMI; see the module docstring. Raises `ImageBuildError` on failure.
    The builder instance is terminated before this returns or raises, whatever happened, and
    an image of a build that did not succeed is deregistered with its snapshots."""
    say = say or (lambda line: None)
    session = session or get_session()
    region = await _resolve_region(options, session)
    clients = AWSClients(region=region, endpoint_url=options.endpoint_url or "", session=session)
    build = _Build(uuid.uuid4().hex[:12])
    try:
        ec2 = await clients.ec2()
        try:
            return await _build(ec2, await clients.ssm(), build, options, region, say)
        except ClientError as e:
            raise ImageBuildError(f"AWS refused: {error_message(e)}") from e
        except AWS_ERRORS as e:  # no credentials, no network, ...
            raise ImageBuildError(f"AWS: {e}") from e
        except ImageNotAvailable as e:
            raise ImageBuildError(str(e)) from e
        finally:
            # Runs on success, on failure and on cancellation (Ctrl-C under asyncio.run).
            await _uninterruptible(_clean_up(ec2, build, options, say), say)
    finally:
        await _uninterruptible(clients.close(), say)


async def _build(
    ec2: Any, ssm_client: Any, build: _Build, options: BuildOptions, region: str, say: Say
) -> BuildResult:
    """The build's steps, recording in `build` what the cleanup must know."""
    if not options.instance_profile:
        say(
            "Note: no --instance-profile; the builder's SSM agent can only register if "
            "the account has Default Host Management Configuration enabled"
        )
    base_ami = options.base_ami or await _latest_al2023(ssm_client)
    say(f"Base image: {base_ami}")
    builder, builder_type = await _launch_builder(ec2, options, base_ami, build.id)
    build.builder = builder
    say(f"Builder instance {builder} ({builder_type}) launched")
    script = options.install_script or install_script_text()
    commands = build_command(script, options.extra_script, gpu=options.gpu)
    command_id = await _send_command(ssm_client, builder, commands, options, say)
    say(f"Install command {command_id} sent; waiting (this takes 10-20 minutes)")
    output = await _wait_command(ssm_client, command_id, builder, options)
    versions = parse_versions(output)
    if not versions:
        say("Warning: the install script printed no AWSJOBS_VERSIONS line")
    else:
        say("Installed: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    name = options.name or time.strftime("awsjobs-worker-%Y%m%d-%H%M%S", time.gmtime())
    ami_tags = image_tags(versions, base_ami, options.extra_tags)
    await _create_image(ec2, build, name, ami_tags, options, say)
    build.succeeded = True
    return BuildResult(
        image_id=str(build.image_id),
        name=name,
        region=region,
        base_ami=base_ami,
        builder_instance_id=builder,
        versions=versions,
        tags=ami_tags,
    )


async def _clean_up(ec2: Any, build: _Build, options: BuildOptions, say: Say) -> None:
    """End the builder; unless the build succeeded, discard the image it may have made."""
    await _terminate_builders(ec2, build.id, build.builder, options, say)
    if build.image_requested and not build.succeeded:
        await _discard_image(ec2, build, options, say)


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


def builder_lifetime_minutes(options: BuildOptions) -> int:
    """The builder's deadline: the longest its steps may take, and a margin."""
    steps = options.agent_timeout_seconds + options.wait_timeout_seconds
    return math.ceil((steps + options.image_timeout_seconds) / 60) + BUILDER_MARGIN_MINUTES


async def _launch_builder(
    ec2: Any, options: BuildOptions, base_ami: str, build_id: str
) -> tuple[str, str]:
    """The builder's instance id and type."""
    # A deadline on the box itself, in case this process dies without cleaning up: it shuts
    # down (and so terminates) after the longest the build may take, re-armed after a reboot;
    # CreateImage does not reboot it (NoReboot), so its scheduled shutdown stays.
    minutes = builder_lifetime_minutes(options)
    user_data = "#!/bin/bash\n" + deadline_commands(minutes, BUILDER_DEADLINE_REASON)
    image = await describe_image(ec2, base_ami)
    instance_type = builder_instance_type(options, (image or {}).get("Architecture"))
    spec = LaunchSpec(
        image_id=base_ami,
        instance_type=instance_type,
        user_data=user_data,
        tags={
            tags.NAME: "awsjobs-image-builder",
            tags.MANAGED: tags.TRUE,
            tags.ROLE: tags.ROLE_IMAGE_BUILDER,
            tags.BUILD_ID: build_id,
            # So `awsjobs instances` lists a builder, and `awsjobs stop-instances` may end it.
            tags.OWNER: tags.owner_tag_value(tags.user_name()),
            # So `awsjobs sweep` ends it if both this process and its own shutdown failed.
            tags.EXPIRES_AT: tags.expires_at_value(time.time() + minutes * 60),
        },
        client_token=f"awsjobs-build-{build_id}",
        root_device=(image or {}).get("RootDeviceName") or DEFAULT_ROOT_DEVICE,
        root_volume_gib=options.volume_size_gib,
        subnet_id=options.subnet_id,
        security_group_ids=options.security_group_ids,
        instance_profile=options.instance_profile or "",
    )
    resp = await ec2.run_instances(**run_instances_parameters(spec))
    return str(resp["Instances"][0]["InstanceId"]), instance_type


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
    ec2: Any, build: _Build, name: str, ami_tags: dict[str, str], options: BuildOptions, say: Say
) -> None:
    """CreateImage of the builder (see the module docstring), until it is available."""
    build.image_requested = True
    resp = await ec2.create_image(
        InstanceId=build.builder,
        Name=name,
        Description="awsjobs-lab worker image (python, papermill, R, rmarkdown, quarto, efs)",
        NoReboot=True,
        TagSpecifications=tags.tag_specifications(
            {tags.NAME: name, tags.BUILD_ID: build.id, **ami_tags}, ("image", "snapshot")
        ),
    )
    build.image_id = image_id = str(resp["ImageId"])
    say(f"Image {image_id} ({name}) is being created; waiting until it is available")
    deadline = time.monotonic() + options.image_timeout_seconds
    while True:
        image = await _describe_image_if_known(ec2, image_id)
        state = str(image.get("State", "")) if image else "pending"
        if state == "available":
            return
        if image is not None and state in FAILED_IMAGE_STATES:
            reason = image.get("StateReason", {}).get("Message", "")
            raise ImageNotAvailable(f"Image {image_id} is {state}: {reason}")
        if time.monotonic() >= deadline:
            raise ImageNotAvailable(
                f"Image {image_id} was not available within "
                f"{options.image_timeout_seconds:g} s (state {state})"
            )
        await asyncio.sleep(options.poll_seconds)


async def _describe_image_if_known(ec2: Any, image_id: str) -> dict[str, Any] | None:
    """The image, or None while EC2 does not know the new id yet."""
    try:
        images = (await ec2.describe_images(ImageIds=[image_id])).get("Images", [])
    except ClientError as exc:
        if error_code(exc) != IMAGE_NOT_FOUND:
            raise
        return None
    return dict(images[0]) if images else None


async def _discard_image(ec2: Any, build: _Build, options: BuildOptions, say: Say) -> None:
    """Deregister the build's image and delete its snapshots (by id, and by the build's tag
    in case CreateImage's answer was lost), retrying while EC2 does not know the new id yet
    and while a snapshot is still held by its image. Never raises: it says what is left."""
    wanted = (tags.BUILD_ID, build.id)
    deadline = time.monotonic() + options.terminate_timeout_seconds
    images = {build.image_id} if build.image_id else set()
    snapshots: set[str] = set()
    while True:
        try:
            images |= await _tagged_images(ec2, wanted)
            snapshots |= await _tagged_snapshots(ec2, wanted)
            images = {i for i in sorted(images) if not await _deregistered(ec2, i, snapshots)}
            if not images:
                snapshots = {s for s in sorted(snapshots) if not await _snapshot_deleted(ec2, s)}
        except AWS_ERRORS as e:
            say(f"Warning: discarding the image failed: {error_message(e)}; retrying")
        if not images and not snapshots:
            if build.image_id:
                say(f"Image {build.image_id} deregistered and its snapshots deleted")
            return
        if time.monotonic() >= deadline:
            left = ", ".join(sorted(images | snapshots))
            say(
                f"WARNING: could not discard {left} (tag {wanted[0]}={wanted[1]}); deregister "
                "the image and delete its snapshots by hand (EC2 console: AMIs, Snapshots)"
            )
            return
        await asyncio.sleep(min(options.poll_seconds, 5.0))


async def _tagged_images(ec2: Any, tag: tuple[str, str]) -> set[str]:
    resp = await ec2.describe_images(Owners=["self"], Filters=[tags.tag_filter(*tag)])
    return {str(i["ImageId"]) for i in resp.get("Images", [])}


async def _tagged_snapshots(ec2: Any, tag: tuple[str, str]) -> set[str]:
    resp = await ec2.describe_snapshots(OwnerIds=["self"], Filters=[tags.tag_filter(*tag)])
    return {str(s["SnapshotId"]) for s in resp.get("Snapshots", [])}


async def _deregistered(ec2: Any, image_id: str, snapshots: set[str]) -> bool:
    """DeregisterImage; adds the image's snapshots to `snapshots` first. True once it is
    deregistered, False while EC2 does not know the id yet."""
    image = await _describe_image_if_known(ec2, image_id) or {}
    for mapping in image.get("BlockDeviceMappings", []):
        if mapping.get("Ebs", {}).get("SnapshotId"):
            snapshots.add(str(mapping["Ebs"]["SnapshotId"]))
    call = ec2.deregister_image(ImageId=image_id)
    return await _settled(call, done=IMAGE_GONE, not_yet=IMAGE_NOT_FOUND)


async def _snapshot_deleted(ec2: Any, snapshot_id: str) -> bool:
    """DeleteSnapshot; True once it is gone, False while its image still holds it."""
    call = ec2.delete_snapshot(SnapshotId=snapshot_id)
    return await _settled(call, done=SNAPSHOT_NOT_FOUND, not_yet=SNAPSHOT_IN_USE)


async def _settled(call: Awaitable[Any], *, done: str, not_yet: str) -> bool:
    """Await a call that removes something: True when it did, or AWS answered `done` (it is
    gone already); False when AWS answered `not_yet` (ask again later). Other errors raise."""
    try:
        await call
    except ClientError as exc:
        if error_code(exc) == not_yet:
            return False
        if error_code(exc) != done:
            raise
    return True


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
