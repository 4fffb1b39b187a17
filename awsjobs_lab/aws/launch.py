"""RunInstances: the request's parameters, and launching over ranked candidates with retries on
capacity errors (next zone, next-cheapest type).

An *uncertain* failure (no answer: a timeout or connection reset, or a 5xx after botocore's own
retries) may hide an instance AWS did launch. The ClientToken is derived from the job and the
candidate (`client_token`), so repeating the call is safe: AWS answers a known token with the
instance it launched for it, and launches nothing new. The launch records each attempt (with
its token) before the call, repeats an uncertain call a few times, and if it stays uncertain
raises `UncertainLaunch`: the caller must then look for the job's instances by tag.

Each RunInstances call runs in its own task, shielded from the launch that asked for it: if that
launch is cancelled while the call is in flight, the instance it creates is still learned and
terminated, and a concurrent Stop can await the call (`Launcher.in_flight`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BackendError
from . import tags
from .catalog import quota_group
from .clients import AWSClients, backoff_delay
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
# RunInstances errors after which a type of another vCPU quota group may work.
QUOTA_ERRORS = frozenset({"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"})
CAPACITY_HINTS = {
    "InsufficientInstanceCapacity": "AWS has no capacity for this type in this zone right now",
    "SpotMaxPriceTooLow": "the spot price is above the on-demand price right now",
    "MaxSpotInstanceCountExceeded": "the account's spot instance limit is reached; "
    "try on-demand or ask AWS for a higher limit",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached",
    "Unsupported": "this instance type is not offered in this zone",
}
DEFAULT_ROOT_DEVICE = "/dev/xvda"  # Amazon Linux's
MAX_CLIENT_TOKEN = 64  # RunInstances' ClientToken: at most 64 ASCII characters
UNCERTAIN_RETRIES = 3  # repeats of an uncertain RunInstances (same token), after botocore's
UNCERTAIN_PAUSE_SECONDS = 2.0

Instance = dict[str, Any]
RunParameters = dict[str, Any]
# record(attempt): persists a launch attempt on the job before its RunInstances is sent.
Remember = Callable[[dict[str, Any]], Awaitable[None]]


class UncertainLaunch(BackendError):
    """RunInstances got no answer (or a 5xx) even after repeats: an instance may exist."""

    def __init__(self, message: str, *, attempted_at: float) -> None:
        super().__init__(message)
        self.attempted_at = attempted_at  # when the last call was sent (epoch seconds)


def client_token(job_id: str, candidate: Candidate) -> str:
    """RunInstances' idempotency token for one job on one candidate: the same across retries
    and server restarts, different for another type, zone or market."""
    where = f"{candidate.instance_type}/{candidate.availability_zone}/{candidate.spot}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    return f"awsjobs-{job_id}-{digest}"[:MAX_CLIENT_TOKEN]


def is_uncertain(exc: BaseException) -> bool:
    """Whether a failed RunInstances may have launched an instance after all: no answer at
    all, or a server error that is not a capacity refusal."""
    if isinstance(exc, BotoCoreError):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return status >= 500 and error_code(exc) not in CAPACITY_ERRORS


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
        "ClientToken": spec.client_token[:MAX_CLIENT_TOKEN],
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


def attempt_record(params: RunParameters, candidate: Candidate) -> dict[str, Any]:
    """What the job's handle keeps of a RunInstances attempt, written before the call."""
    return {
        "client_token": params.get("ClientToken", ""),
        "instance_type": candidate.instance_type,
        "availability_zone": candidate.availability_zone,
        "spot": candidate.spot,
        "at": time.time(),
    }


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
        uncertain_pause: float = UNCERTAIN_PAUSE_SECONDS,
    ) -> None:
        self.clients = clients
        self.max_attempts = max(1, max_attempts)
        self.uncertain_pause = uncertain_pause  # first pause between repeats
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
        remember: Remember,
    ) -> tuple[Instance, Candidate]:
        """RunInstances with the best candidate; on a capacity error the next ones, on a vCPU
        quota error the next ones of another quota group (at most `max_attempts` calls).
        `parameters(candidate, attempt)` gives each call's arguments;
        `remember` persists each attempt before its call. Raises `UncertainLaunch` when a
        call stays without a clear answer, BackendError when every candidate was refused."""
        failures: list[str] = []
        full: set[tuple[bool, str]] = set()  # (spot, quota group) whose vCPU quota is used up
        attempt = 0
        for candidate in candidates:
            quota = (candidate.spot, quota_group(candidate.instance_type))
            if attempt >= self.max_attempts or stopping():
                break
            if quota in full:
                continue  # the same quota would refuse it too
            # Idempotency is the launcher's: one token per job and candidate, whatever the
            # parameters carried, so a repeat or a restart never launches a second instance.
            params = {
                **parameters(candidate, attempt),
                "ClientToken": client_token(job_id, candidate),
            }
            attempt += 1
            await remember(attempt_record(params, candidate))
            try:
                return await self.run_surely(job_id, params), candidate
            except ClientError as exc:
                failures.append(capacity_failure(candidate, exc))
                if error_code(exc) in QUOTA_ERRORS:
                    full.add(quota)
                elif error_code(exc) not in CAPACITY_ERRORS:
                    break
                log.info("awsjobs: job %s: %s; trying the next", job_id, failures[-1])
        if stopping() and not failures:
            raise BackendError("stopped before an instance was launched")
        raise BackendError("RunInstances failed: " + "; ".join(failures))

    async def run_surely(self, job_id: str, params: RunParameters) -> Instance:
        """`run`, repeated with the same ClientToken while its outcome is uncertain (AWS
        answers a known token with the instance it launched for it). Raises UncertainLaunch
        if it stays uncertain; a clear refusal (ClientError) propagates."""
        problem, attempted_at = "", time.time()
        for repeat in range(UNCERTAIN_RETRIES + 1):
            attempted_at = time.time()
            try:
                return await self.run(job_id, params)
            except (ClientError, BotoCoreError) as exc:
                if not is_uncertain(exc):
                    raise
                problem = f"{params.get('InstanceType')}: {error_message(exc)}"
                log.warning("awsjobs: job %s: RunInstances uncertain (%s)", job_id, problem)
            if repeat < UNCERTAIN_RETRIES:
                await asyncio.sleep(backoff_delay(repeat, self.uncertain_pause, 30.0))
        raise UncertainLaunch(
            f"RunInstances got no clear answer ({problem})", attempted_at=attempted_at
        )

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
