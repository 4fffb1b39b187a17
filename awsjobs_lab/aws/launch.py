"""Launching a job's instance: the RunInstances parameters of each candidate (what a worker is
given), and one EC2 Fleet over the cheapest pools (`aws.fleet`): AWS skips a pool without
capacity inside the call, so a capacity error costs no serial walk over candidates.

An *uncertain* failure (no answer: a timeout or connection reset, or a 5xx after botocore's own
retries) may hide an instance AWS did launch. CreateFleet's ClientToken is derived from the job
and the pools offered (`fleet.fleet_token`), so repeating the call is safe: AWS answers a known
token with the fleet it made for it, and launches nothing new. The launch records each attempt
(with its token) before the call, repeats an uncertain call a few times, and if it stays
uncertain raises `UncertainLaunch`: the caller must then look for the job's instances by tag.

Each CreateFleet call runs in its own task, shielded from the launch that asked for it: if that
launch is cancelled while the call is in flight, the instance it creates is still learned and
terminated, and a concurrent Stop can await the call (`Launcher.in_flight`).
"""

from __future__ import annotations

import asyncio
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
from .errors import AWS_ERRORS, aws_errors, error_code, error_message
from .fleet import (
    MAX_CLIENT_TOKEN,
    PoolError,
    fleet_request,
    fleet_token,
    read_answer,
    tag_dict,
    template_data,
    template_name,
)
from .select import Candidate, fleet_pools

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
TEMPLATE_EXISTS = "InvalidLaunchTemplateName.AlreadyExistsException"
POOL = "pool"  # the Candidate an instance was launched in, in the Instance a launch returns
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


def attempt_record(request: RunParameters, pools: Sequence[Candidate]) -> dict[str, Any]:
    """What the job's handle keeps of a CreateFleet attempt, written before the call (the
    cheapest pool offered stands for the attempt)."""
    first = pools[0]
    return {
        "client_token": request.get("ClientToken", ""),
        "instance_type": first.instance_type,
        "availability_zone": first.availability_zone,
        "spot": first.spot,
        "pools": len(pools),
        "at": time.time(),
    }


def capacity_failure(error: PoolError) -> str:
    """One line of a launch's failures: where, what AWS said, and what it means."""
    hint = CAPACITY_HINTS.get(error.code, "")
    where = error.candidate
    place = f"{where.instance_type} in {where.availability_zone}: " if where else ""
    return f"{place}{error.message or error.code}{f' ({hint})' if hint else ''}"


class NoPoolLaunched(BackendError):
    """CreateFleet answered without an instance: every pool it tried was refused."""

    def __init__(self, errors: list[PoolError]) -> None:
        super().__init__("; ".join(capacity_failure(e) for e in errors) or "no instance")
        self.errors = errors


class Launcher:
    """CreateFleet for jobs: at most `max_concurrent` calls in flight (AWS rate-limits launches
    per account: a burst of jobs queues here), the cheapest pools offered at once."""

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
        """The job's CreateFleet call still in flight, if any."""
        return self._in_flight.get(job_id)

    async def run_first_available(
        self,
        job_id: str,
        candidates: Sequence[Candidate],
        parameters: Callable[[Candidate, int], RunParameters],
        stopping: Callable[[], bool],
        remember: Remember,
    ) -> tuple[Instance, Candidate]:
        """One instance in the best pool AWS has capacity for, among the pools of the cheapest
        types (`select.fleet_pools`), from one CreateFleet. Pools it refused for capacity are
        not offered again; after a vCPU quota error only pools of another quota group it did
        not try are (at most `max_attempts` calls). `parameters(candidate, attempt)` gives a
        pool's RunInstances arguments (the template is made of the cheapest pool's);
        `remember` persists each attempt before its call. Raises `UncertainLaunch` when a call
        stays without a clear answer, BackendError when every pool was refused."""
        if stopping():
            raise BackendError("stopped before an instance was launched")
        pools = fleet_pools(candidates)
        first = parameters(pools[0], 0)
        ec2 = await self.clients.ec2()
        template_id = await self._create_template(ec2, job_id, first)
        try:
            instance, chosen = await self._walk(
                job_id, pools, template_id, tag_dict(first), stopping, remember
            )
        finally:
            await self._delete_template(ec2, template_id)
        await self._retag(ec2, instance["InstanceId"], tag_dict(first), parameters(chosen, 0))
        return instance, chosen

    async def _walk(
        self,
        job_id: str,
        pools: list[Candidate],
        template_id: str,
        fleet_tags: Mapping[str, str],
        stopping: Callable[[], bool],
        remember: Remember,
    ) -> tuple[Instance, Candidate]:
        failures: list[str] = []
        tried: set[Candidate] = set()
        full: set[tuple[bool, str]] = set()  # (spot, quota group) whose vCPU quota is used up
        for _ in range(self.max_attempts):
            offered = [
                c
                for c in pools
                if c not in tried and (c.spot, quota_group(c.instance_type)) not in full
            ]
            if not offered or stopping():
                break
            request = fleet_request(template_id, offered, fleet_token(job_id, offered), fleet_tags)
            await remember(attempt_record(request, offered))
            try:
                instance = await self.call_surely(job_id, request, offered)
                return instance, instance[POOL]
            except NoPoolLaunched as exc:
                failures.extend(capacity_failure(e) for e in exc.errors)
                tried.update(e.candidate for e in exc.errors if e.candidate is not None)
                full.update(
                    (e.candidate.spot, quota_group(e.candidate.instance_type))
                    for e in exc.errors
                    if e.candidate is not None and e.code in QUOTA_ERRORS
                )
                if any(e.code not in CAPACITY_ERRORS | QUOTA_ERRORS for e in exc.errors):
                    break  # not a shortage: another offer would be refused the same way
                log.info("awsjobs: job %s: %s", job_id, "; ".join(failures))
            except ClientError as exc:
                failures.append(f"CreateFleet: {error_message(exc)}")
                break
        if stopping() and not failures:
            raise BackendError("stopped before an instance was launched")
        raise BackendError("CreateFleet launched nothing: " + "; ".join(failures))

    async def call_surely(
        self, job_id: str, request: RunParameters, pools: Sequence[Candidate]
    ) -> Instance:
        """`call`, repeated with the same ClientToken while its outcome is uncertain (AWS
        answers a known token with the fleet it made for it). Raises UncertainLaunch if it
        stays uncertain; a clear refusal (ClientError, NoPoolLaunched) propagates."""
        problem, attempted_at = "", time.time()
        for repeat in range(UNCERTAIN_RETRIES + 1):
            attempted_at = time.time()
            try:
                return await self.call(job_id, request, pools)
            except (ClientError, BotoCoreError) as exc:
                if not is_uncertain(exc):
                    raise
                problem = error_message(exc)
                log.warning("awsjobs: job %s: CreateFleet uncertain (%s)", job_id, problem)
            if repeat < UNCERTAIN_RETRIES:
                await asyncio.sleep(backoff_delay(repeat, self.uncertain_pause, 30.0))
        raise UncertainLaunch(
            f"CreateFleet got no clear answer ({problem})", attempted_at=attempted_at
        )

    async def call(
        self, job_id: str, request: RunParameters, pools: Sequence[Candidate]
    ) -> Instance:
        """One CreateFleet call in its own shielded task (see the module docstring): the
        instance it launched (`InstanceId`, and its pool under POOL), or NoPoolLaunched."""
        ec2 = await self.clients.ec2()

        async def create() -> Instance:
            async with self._slots:
                answer = read_answer(await ec2.create_fleet(**request), pools)
            if not answer.launched:
                raise NoPoolLaunched(answer.errors)
            (iid, pool), *extra = answer.launched
            if extra:  # one was asked for; never leave another running
                await self._terminate([i for i, _ in extra], job_id)
            return {"InstanceId": iid, "InstanceType": pool.instance_type, POOL: pool}

        task = asyncio.get_running_loop().create_task(create(), name=f"awsjobs-fleet-{job_id}")
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

    # -- the job's launch template ---------------------------------------------------------

    async def _create_template(self, ec2: Any, job_id: str, params: RunParameters) -> str:
        """The job's launch template (see `aws.fleet`); an existing one of the same content
        (a repeated creation whose first answer was lost) is used as it is."""
        data = template_data(params)
        name = template_name(job_id, data)
        template_tags = tags.tag_specifications(tag_dict(params), ("launch-template",))
        with aws_errors("CreateLaunchTemplate failed"):
            try:
                made = await ec2.create_launch_template(
                    LaunchTemplateName=name,
                    LaunchTemplateData=data,
                    TagSpecifications=template_tags,
                    ClientToken=name[-MAX_CLIENT_TOKEN:],
                )
                return str(made["LaunchTemplate"]["LaunchTemplateId"])
            except ClientError as exc:
                if error_code(exc) != TEMPLATE_EXISTS:
                    raise
            found = await ec2.describe_launch_templates(LaunchTemplateNames=[name])
            return str(found["LaunchTemplates"][0]["LaunchTemplateId"])

    async def _delete_template(self, ec2: Any, template_id: str) -> None:
        """Best effort: a template left behind costs nothing and launches nothing by itself."""
        try:
            await ec2.delete_launch_template(LaunchTemplateId=template_id)
        except AWS_ERRORS as exc:
            log.warning("awsjobs: could not delete launch template %s: %s", template_id, exc)

    async def _retag(
        self, ec2: Any, iid: str, template_tags: Mapping[str, str], pool: RunParameters
    ) -> None:
        """The template carries the cheapest pool's tags (its hourly price); an instance of
        another pool gets its own, in one CreateTags. Best effort: the job's record has the
        right price whatever happens here."""
        changed = {k: v for k, v in tag_dict(pool).items() if template_tags.get(k) != v}
        if not changed:
            return
        try:
            await ec2.create_tags(Resources=[iid], Tags=tags.tag_list(changed))
        except AWS_ERRORS as exc:
            log.warning("awsjobs: could not tag %s with its pool's price: %s", iid, exc)
