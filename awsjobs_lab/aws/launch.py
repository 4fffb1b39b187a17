"""RunInstances: the request's parameters, and launching over ranked candidates with retries on
capacity errors (next zone, next-cheapest type).

Each RunInstances call runs in its own task, shielded from the launch that asked for it: if that
launch is cancelled while the call is in flight, the instance it creates is still learned and
terminated, and a concurrent Stop can await the call (`Launcher.in_flight`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BackendError
from . import tags
from .clients import AWSClients
from .errors import error_code, error_message
from .select import Candidate

log = logging.getLogger(__name__)

# RunInstances errors after which another type or zone may work.
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "Unsupported",
        "InsufficientFreeAddressesInSubnet",
    }
)
CAPACITY_HINTS = {
    "InsufficientInstanceCapacity": "AWS has no capacity for this type in this zone right now",
    "SpotMaxPriceTooLow": "the spot price is above the on-demand price right now",
    "MaxSpotInstanceCountExceeded": "the account's spot instance limit is reached; "
    "try on-demand or ask AWS for a higher limit",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached",
    "Unsupported": "this instance type is not offered in this zone",
}
DEFAULT_ROOT_DEVICE = "/dev/xvda"  # Amazon Linux's

Instance = dict[str, Any]
RunParameters = dict[str, Any]


@dataclass(frozen=True)
class LaunchSpec:
    """One instance to launch. It terminates itself when it shuts down (its own deadline, the
    end of its job), requires IMDSv2, and carries `tags` on itself and its volumes."""

    image_id: str
    instance_type: str
    user_data: str  # plain text: botocore base64-encodes it
    tags: Mapping[str, str]
    client_token: str  # idempotency on real AWS: a retried call returns the same instance
    root_device: str = DEFAULT_ROOT_DEVICE
    root_volume_gib: int = 30
    subnet_id: str | None = None
    security_group_ids: Sequence[str] = ()
    instance_profile: str = ""  # name or ARN
    key_name: str = ""
    spot: bool = False


def instance_profile_parameter(name_or_arn: str) -> dict[str, str]:
    return {"Arn" if name_or_arn.startswith("arn:") else "Name": name_or_arn}


def run_instances_parameters(spec: LaunchSpec) -> RunParameters:
    """Keyword arguments of `ec2.run_instances` for one instance."""
    params: RunParameters = {
        "ImageId": spec.image_id,
        "InstanceType": spec.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": spec.user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": spec.root_device,
                "Ebs": {
                    "VolumeSize": int(spec.root_volume_gib),
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": tags.tag_specifications(spec.tags),
        "ClientToken": spec.client_token[:64],
    }
    if spec.subnet_id:
        params["SubnetId"] = spec.subnet_id
    if spec.security_group_ids:
        params["SecurityGroupIds"] = list(spec.security_group_ids)
    if spec.instance_profile:
        params["IamInstanceProfile"] = instance_profile_parameter(spec.instance_profile)
    if spec.key_name:
        params["KeyName"] = spec.key_name
    if spec.spot:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return params


async def describe_image(ec2: Any, image_id: str) -> dict[str, Any] | None:
    """The AMI's description, or None when EC2 cannot describe it (e.g. shared from an account
    that does not allow DescribeImages): the caller then uses its defaults."""
    try:
        images = (await ec2.describe_images(ImageIds=[image_id])).get("Images", [])
    except ClientError as exc:
        log.warning("awsjobs: cannot describe image %s: %s", image_id, error_message(exc))
        return None
    return dict(images[0]) if images else None


def capacity_failure(candidate: Candidate, exc: ClientError) -> str:
    """One line of a launch's failures: where, what AWS said, and what it means."""
    hint = CAPACITY_HINTS.get(error_code(exc), "")
    return (
        f"{candidate.instance_type} in {candidate.availability_zone}: "
        f"{error_message(exc)}{f' ({hint})' if hint else ''}"
    )


class Launcher:
    """RunInstances for jobs: at most `max_concurrent` calls in flight (AWS rate-limits the
    call per account: a burst of jobs queues here), the best candidate first, the next ones
    after capacity errors."""

    def __init__(
        self,
        clients: AWSClients,
        *,
        max_concurrent: int,
        max_attempts: int,
        terminate: Callable[[list[str], str], Coroutine[Any, Any, object]],
    ) -> None:
        self.clients = clients
        self.max_attempts = max(1, max_attempts)
        self._terminate = terminate  # terminate-and-confirm, never raising (ids, job id)
        self._slots = asyncio.Semaphore(max(1, max_concurrent))
        self._in_flight: dict[str, asyncio.Task[Instance]] = {}

    def in_flight(self, job_id: str) -> asyncio.Task[Instance] | None:
        """The job's RunInstances call still in flight, if any."""
        return self._in_flight.get(job_id)

    async def run_first_available(
        self,
        job_id: str,
        candidates: Sequence[Candidate],
        parameters: Callable[[Candidate, int], RunParameters],
        stopping: Callable[[], bool],
    ) -> tuple[Instance, Candidate]:
        """RunInstances with the best candidate; on a capacity error the next ones (at most
        `max_attempts`). `parameters(candidate, attempt)` gives each call's arguments."""
        failures: list[str] = []
        for attempt, candidate in enumerate(candidates[: self.max_attempts]):
            if stopping():
                break
            try:
                return await self.run(job_id, parameters(candidate, attempt)), candidate
            except ClientError as exc:
                failures.append(capacity_failure(candidate, exc))
                if error_code(exc) not in CAPACITY_ERRORS:
                    break
                log.info("awsjobs: job %s: %s; trying the next", job_id, failures[-1])
            except BotoCoreError as exc:
                failures.append(f"{candidate.instance_type}: {exc}")
                break
        if stopping() and not failures:
            raise BackendError("stopped before an instance was launched")
        raise BackendError("RunInstances failed: " + "; ".join(failures))

    async def run(self, job_id: str, params: RunParameters) -> Instance:
        """One RunInstances call in its own shielded task (see the module docstring)."""
        ec2 = await self.clients.ec2()

        async def call() -> Instance:
            async with self._slots:
                resp = await ec2.run_instances(**params)
            return dict(resp["Instances"][0])

        task = asyncio.get_running_loop().create_task(call(), name=f"awsjobs-run-{job_id}")
        self._in_flight[job_id] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._terminate_if_launched(done, job_id))
            raise
        finally:
            if task.done():
                self._in_flight.pop(job_id, None)
            else:
                task.add_done_callback(lambda _: self._in_flight.pop(job_id, None))

    def _terminate_if_launched(self, task: asyncio.Task[Instance], job_id: str) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        iid = task.result()["InstanceId"]
        log.warning("awsjobs: terminating %s: its launch was cancelled", iid)
        asyncio.get_running_loop().create_task(self._terminate([iid], job_id))
