"""EC2 + SSM backend: each job runs on its own freshly launched instance.

Launch: choose the cheapest instance type that fits (`aws.select`), `RunInstances` with the
worker's boot script (`aws.userdata`: EFS mount, lifetime deadline) and
`InstanceInitiatedShutdownBehavior=terminate`, record the instance id at once, then
`SendCommand` the job's script (`aws.command`). Status: one monitor loop for every job
(`aws.monitor`). Stop: `CancelCommand` (best effort) + `TerminateInstances`, confirmed.

Minimum configuration (`is_configured`): `image_id` (or `image_ssm_parameter`), `subnet_ids`,
`efs_file_system_id`, and `instance_profile_name` (or `instance_profile_arn`): without an
instance profile the SSM agent can't register and no command could ever reach the worker.
The server's root must lie inside `efs_mount_path` (default: the server root itself), so that
absolute paths are the same on the server and on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from traitlets import Bool, Dict, Float, Int, List, Unicode, default

from ..aws.catalog import Catalog, OnDemandPrices
from ..aws.clients import AWSClients, backoff_delay, error_code, error_message, is_throttling
from ..aws.command import DOCUMENT, build_commands, send_command_parameters
from ..aws.monitor import (
    ALIVE,
    GONE,
    HALTED,
    Monitor,
    classify,
    describe_ids,
    describe_instances,
    managed_filters,
    outcome_for_command,
    read_exit_code,
    state_of,
    tags_of,
    timestamp,
)
from ..aws.monitor import terminate as terminate_ids
from ..aws.select import Candidate, Policy, distinct_types, rank
from ..aws.userdata import build_user_data
from ..errors import BackendError, Forbidden, InvalidRequest
from ..models import Job, JobState, Outcome
from ..patterns import INSTANCE_ID
from ..runners import build_command
from .base import Backend, BackendNotConfigured, Capabilities, RecordHandle

TAG_JOB = "awsjobs:job-id"
TAG_OWNER = "awsjobs:owner"
TAG_MANAGED = "awsjobs:managed"
TAG_ROLE = "awsjobs:role"
TAG_PRICE = "awsjobs:hourly-price"
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
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


class _LaunchTimeout(Exception):
    pass


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _tag_value(value: str, limit: int = 255) -> str:
    return re.sub(r"[^\w .:/=+\-@]", "_", value)[:limit]


class EC2Backend(Backend):
    """Runs each job on its own freshly launched EC2 instance, driven through SSM."""

    id: ClassVar[str] = "ec2"
    label: ClassVar[str] = "AWS EC2"
    capabilities: ClassVar[Capabilities] = Capabilities(
        spot=True, instance_types=True, instances=True, hourly_price=True
    )

    # -- where and what to launch ------------------------------------------------------------
    region = Unicode(
        help="AWS region of the workers (default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)."
    ).tag(config=True)
    endpoint_url = Unicode(
        "",
        help="EC2 and SSM endpoint (e.g. a moto server in tests). Empty: botocore's default, "
        "which honours $AWS_ENDPOINT_URL.",
    ).tag(config=True)
    pricing_endpoint_url = Unicode(
        "", help="Price List API endpoint (empty: the public us-east-1 endpoint)."
    ).tag(config=True)
    image_id = Unicode(
        "",
        help="AMI of the workers: Linux with the SSM agent, amazon-efs-utils (or NFS client), "
        "Python 3 with papermill and ipykernel, and R/Quarto if you run those. "
        "`awsjobs build-image` builds one.",
    ).tag(config=True)
    image_ssm_parameter = Unicode(
        "",
        help="Instead of image_id: an SSM parameter holding the AMI id, resolved once per server "
        "start (e.g. '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64').",
    ).tag(config=True)
    architecture = Unicode(
        "x86_64",
        help="CPU architecture of the AMI ('x86_64' or 'arm64'); only matching instance types are "
        "considered. Read from the AMI itself when EC2 can describe it.",
    ).tag(config=True)
    subnet_ids = List(
        Unicode(),
        help="Subnets to launch into, at most one per availability zone. Spot jobs go to the "
        "zone with the cheapest price; on-demand jobs to the first subnet (the next on "
        "capacity errors). Workers need a route to SSM (NAT, public IP, or VPC endpoints).",
    ).tag(config=True)
    security_group_ids = List(
        Unicode(),
        help="Security groups of the workers (empty: the VPC's default group). The EFS mount "
        "targets must accept NFS (TCP 2049) from them.",
    ).tag(config=True)
    instance_profile_name = Unicode(
        "", help="IAM instance profile of the workers (needs AmazonSSMManagedInstanceCore)."
    ).tag(config=True)
    instance_profile_arn = Unicode("", help="The instance profile by ARN instead of name.").tag(
        config=True
    )
    key_name = Unicode("", help="Optional EC2 key pair for SSH into workers.").tag(config=True)
    root_volume_gib = Int(30, help="Size of the worker's root volume (gp3), GiB.").tag(config=True)
    root_device_name = Unicode(
        "/dev/xvda",
        help="Root device of the AMI, used when EC2 cannot describe the image.",
    ).tag(config=True)
    extra_tags = Dict(
        value_trait=Unicode(), help="More tags on every worker instance and volume."
    ).tag(config=True)
    extra_user_data = Unicode(
        "", help="Shell commands appended to the worker's boot script (run as root)."
    ).tag(config=True)
    worker_python = Unicode("python3", help="Python interpreter on the worker.").tag(config=True)

    # -- shared file system ------------------------------------------------------------------
    efs_file_system_id = Unicode(
        "", help="EFS file system (fs-...) mounted on the server and on every worker."
    ).tag(config=True)
    efs_access_point_id = Unicode(
        "", help="Optional EFS access point (fsap-...); requires amazon-efs-utils on the AMI."
    ).tag(config=True)
    efs_mount_path = Unicode(
        "",
        help="Where workers mount the file system: the path where the server has it mounted "
        "(default: the server root). The server root must be inside it.",
    ).tag(config=True)
    efs_use_iam = Bool(
        False, help="Mount with the 'iam' option (when the file system policy requires IAM)."
    ).tag(config=True)

    # -- choice of instance ------------------------------------------------------------------
    allowed_families = List(
        Unicode(),
        help="Only these instance families (e.g. ['m7i', 'c7a', 'r7*']); empty: all.",
    ).tag(config=True)
    denied_families = List(
        Unicode(),
        default_value=["t1", "t2", "t3", "t3a", "t4g"],
        help="Never these families. Default: the burstable ones, whose CPU credits run out "
        "during long jobs.",
    ).tag(config=True)
    include_accelerated_types = Bool(
        False,
        help="Let automatic choice pick GPU/FPGA/Inferentia types (a requested type is always "
        "allowed).",
    ).tag(config=True)
    max_priced_types = Int(
        40, help="How many of the smallest fitting types are priced when choosing."
    ).tag(config=True)
    max_launch_attempts = Int(
        3,
        help="On a capacity error (no capacity, spot price too high) try up to this many "
        "candidates (next zone or next-cheapest type).",
    ).tag(config=True)
    cache_dir = Unicode(help="Where on-demand prices are cached (default: Jupyter data dir).").tag(
        config=True
    )
    warm_prices_on_start = Bool(
        True, help="Read on-demand prices in the background when the server starts."
    ).tag(config=True)
    price_cache_max_age_hours = Float(
        168.0, help="On-demand prices younger than this are used without asking AWS."
    ).tag(config=True)

    # -- ownership, monitor, timeouts --------------------------------------------------------
    owner = Unicode(
        help="Tag awsjobs:owner of this server's instances (default: the OS user). Instances "
        "of other owners are neither listed nor stopped from here. Empty: no owner check."
    ).tag(config=True)
    terminate_orphans = Bool(
        False,
        help="On start, terminate our tagged instances that belong to no active job. Off by "
        "default: they are only logged (each still halts itself at its lifetime deadline), "
        "because another server with the same owner may be running them.",
    ).tag(config=True)
    monitor_interval_seconds = Float(15.0, help="Seconds between monitor cycles.").tag(config=True)
    monitor_max_backoff_seconds = Float(
        300.0, help="Longest pause of the monitor when AWS throttles or fails."
    ).tag(config=True)
    command_check_interval_seconds = Float(
        120.0,
        help="How often (per job) the monitor asks SSM again about a command that is past its "
        "execution timeout without an exit code (running jobs are never asked).",
    ).tag(config=True)
    command_checks_per_cycle = Int(
        1,
        help="At most this many SSM status calls per monitor cycle (they are only for jobs "
        "whose command ended without an exit code); more than 1 raises the bound of 4 AWS "
        "calls per cycle.",
    ).tag(config=True)
    exit_code_grace_seconds = Float(
        90.0,
        help="How long to wait for a job's exit_code file after its instance or command ended "
        "(the server's NFS client may cache directory listings).",
    ).tag(config=True)
    max_concurrent_run_instances = Int(
        8,
        help="How many RunInstances calls may be in flight at once. AWS rate-limits "
        "RunInstances per account; a burst of jobs queues here instead of being throttled.",
    ).tag(config=True)
    launch_timeout_seconds = Float(
        600.0,
        help="How long a new instance may take until SSM accepts the job's command; then the "
        "job fails and the instance is terminated.",
    ).tag(config=True)
    ssm_retry_seconds = Float(
        2.0, help="First pause between SendCommand attempts while the agent registers."
    ).tag(config=True)
    ssm_retry_max_seconds = Float(15.0, help="Longest pause between SendCommand attempts.").tag(
        config=True
    )
    reattach_grace_seconds = Float(
        120.0,
        help="After a restart, how long a job with no visible instance is looked for again "
        "before it is declared never launched (EC2 lists new instances with a delay).",
    ).tag(config=True)
    stop_confirm_attempts = Int(
        3, help="DescribeInstances checks after TerminateInstances before a Stop is retried."
    ).tag(config=True)
    stop_confirm_delay_seconds = Float(1.0, help="Pause between those checks.").tag(config=True)

    @default("region")
    def _default_region(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    @default("owner")
    def _default_owner(self) -> str:
        return _user_name()

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return os.path.join(jupyter_data_dir(), "awsjobs_lab", "cache")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: AWSClients | None = None
        self._catalog: Catalog | None = None
        self._prices: OnDemandPrices | None = None
        self._monitor: Monitor | None = None
        self._stopping: set[str] = set()
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._run_slots = asyncio.Semaphore(max(1, self.max_concurrent_run_instances))
        self._subnets: list[tuple[str, str]] | None = None
        self._image: tuple[str, str, str] | None = None  # (ami id, root device, architecture)
        self._setup_lock = asyncio.Lock()
        self._started = False  # start() was called: the monitor loop runs
        self._warmup: asyncio.Task[None] | None = None

    # -- configuration -----------------------------------------------------------------------

    def missing_settings(self) -> list[str]:
        """The settings still to set before jobs can run here, as c.EC2Backend.* names."""
        missing = []
        if not (self.image_id or self.image_ssm_parameter):
            missing.append("image_id")
        if not self.subnet_ids:
            missing.append("subnet_ids")
        if not self.efs_file_system_id:
            missing.append("efs_file_system_id")
        if not (self.instance_profile_name or self.instance_profile_arn):
            missing.append("instance_profile_name")
        return missing

    def _mount_problem(self) -> str | None:
        if not self.root_dir:
            return None
        mount = PurePosixPath(self.mount_path)
        root = PurePosixPath(self.root_dir)
        if not mount.is_absolute():
            return f"c.EC2Backend.efs_mount_path must be an absolute path, not {str(mount)!r}"
        if root != mount and mount not in root.parents:
            return (
                f"the server root {str(root)!r} is not inside c.EC2Backend.efs_mount_path "
                f"{str(mount)!r}: workers could not see the job's files"
            )
        return None

    @property
    def owner_tag(self) -> str:
        """The value of our awsjobs:owner tag ('' = no owner check)."""
        return _tag_value(self.owner)

    @property
    def mount_path(self) -> str:
        """Where workers mount EFS: `efs_mount_path`, or the server root."""
        return self.efs_mount_path or str(self.root_dir)

    def is_configured(self) -> bool:
        return not self.missing_settings() and self._mount_problem() is None

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data.update(
            {
                "region": self.region,
                "owner": self.owner,
                "missing_settings": [f"c.EC2Backend.{m}" for m in self.missing_settings()],
                "problem": self._mount_problem(),
                "architecture": self.architecture,
                "efs_mount_path": self.mount_path,
                "spot_supported": True,
            }
        )
        return data

    def configuration_problem(self) -> str | None:
        """None when jobs can run here, else what to set (shown to users as is)."""
        missing = self.missing_settings()
        if missing:
            names = ", ".join(f"c.EC2Backend.{m}" for m in missing)
            return f"The EC2 backend is not configured: set {names}."
        problem = self._mount_problem()
        if problem:
            return f"The EC2 backend is misconfigured: {problem}."
        return None

    def _require_configured(self) -> None:
        problem = self.configuration_problem()
        if problem:
            raise BackendNotConfigured(problem)

    def validate(self, job: Job) -> None:
        self._require_configured()
        for name in job.env:
            if name.upper().startswith("AWSJOBS_"):
                raise InvalidRequest(f"env: {name} is reserved (names starting with AWSJOBS_).")

    async def check_request(self, job: Job) -> None:
        """Optional async part of validation (the service may await it before accepting a
        job, to answer 400): a requested instance type must exist and be allowed."""
        self.validate(job)
        if job.requested_instance_type:
            await self.preview(
                memory_gib=job.memory_gib,
                cpus=job.cpus,
                spot=job.spot,
                instance_type=job.requested_instance_type,
            )

    # -- life cycle --------------------------------------------------------------------------

    @property
    def clients(self) -> AWSClients:
        if self._clients is None:
            self._clients = AWSClients(
                region=self.region,
                endpoint_url=self.endpoint_url,
                pricing_endpoint_url=self.pricing_endpoint_url,
            )
        return self._clients

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.clients, architecture=self.architecture)
        return self._catalog

    @property
    def prices(self) -> OnDemandPrices:
        if self._prices is None:
            self._prices = OnDemandPrices(
                self.clients,
                cache_dir=self.cache_dir,
                max_age_seconds=self.price_cache_max_age_hours * 3600,
            )
        return self._prices

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            self._monitor = Monitor(
                self.clients,
                owner=self.owner_tag,
                interval=self.monitor_interval_seconds,
                max_backoff=self.monitor_max_backoff_seconds,
                command_check_interval=self.command_check_interval_seconds,
                command_checks_per_cycle=self.command_checks_per_cycle,
                exit_grace=self.exit_code_grace_seconds,
            )
        return self._monitor

    async def start(self) -> None:
        # No AWS call is awaited here: the server must start even without credentials or
        # network. On-demand prices are warmed in the background so the first preview is fast.
        self._started = True
        self.monitor.start()
        if self.is_configured() and self.warm_prices_on_start:
            self._warmup = asyncio.get_running_loop().create_task(
                self._warm_prices(), name="awsjobs-ec2-prices"
            )

    async def _warm_prices(self) -> None:
        try:
            table = await self.prices.table()
            self.log.info("awsjobs: on-demand prices from %s", table.label)
        except Exception as exc:  # never fatal: previews fall back on their own
            self.log.info("awsjobs: could not warm the on-demand prices: %s", exc)

    async def close(self) -> None:
        warmup, self._warmup = self._warmup, None
        if warmup is not None and not warmup.done():
            warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warmup
        if self._monitor is not None:
            await self._monitor.close()
        if self._clients is not None:
            await self._clients.close()

    # -- helpers -----------------------------------------------------------------------------

    def _policy(self) -> Policy:
        return Policy(
            allowed_families=tuple(self.allowed_families),
            denied_families=tuple(self.denied_families),
            include_accelerated=self.include_accelerated_types,
            max_priced_types=self.max_priced_types,
        )

    async def _subnet_zones(self) -> list[tuple[str, str]]:
        """(subnet id, availability zone) of the configured subnets, in configured order."""
        if self._subnets is None:
            ec2 = await self.clients.ec2()
            try:
                resp = await ec2.describe_subnets(SubnetIds=list(self.subnet_ids))
            except ClientError as exc:
                if error_code(exc).startswith("InvalidSubnet"):
                    raise BackendNotConfigured(
                        f"c.EC2Backend.subnet_ids: {error_message(exc)}"
                    ) from exc
                raise
            zones = {s["SubnetId"]: s["AvailabilityZone"] for s in resp.get("Subnets", [])}
            self._subnets = [(s, zones[s]) for s in self.subnet_ids if s in zones]
        return self._subnets

    async def _resolve_image(self) -> tuple[str, str, str]:
        """(AMI id, root device name, architecture), resolved once."""
        async with self._setup_lock:
            if self._image is not None:
                return self._image
            ami = self.image_id
            if not ami:
                ssm = await self.clients.ssm()
                resp = await ssm.get_parameter(Name=self.image_ssm_parameter)
                ami = str(resp["Parameter"]["Value"])
            root_device, arch = self.root_device_name, self.architecture
            ec2 = await self.clients.ec2()
            try:
                images = (await ec2.describe_images(ImageIds=[ami])).get("Images", [])
            except ClientError as exc:
                self.log.warning("awsjobs: cannot describe image %s: %s", ami, error_message(exc))
                images = []
            if images:
                root_device = images[0].get("RootDeviceName") or root_device
                image_arch = images[0].get("Architecture")
                if image_arch and image_arch != arch:
                    self.log.info("awsjobs: image %s is %s; using that", ami, image_arch)
                    arch = image_arch
            self.catalog.architecture = arch
            self._image = (ami, root_device, arch)
            return self._image

    async def _candidates(
        self, *, memory_gib: float, cpus: int, spot: bool, instance_type: str | None
    ) -> list[Candidate]:
        await self._resolve_image()
        subnets = await self._subnet_zones()
        if not subnets:
            raise BackendNotConfigured(
                "None of c.EC2Backend.subnet_ids exists in region " + self.region
            )
        return await rank(
            self.catalog,
            self.prices,
            memory_gib=memory_gib,
            cpus=cpus,
            spot=spot,
            subnets=subnets,
            policy=self._policy(),
            instance_type=instance_type,
        )

    def _paths(self, job: Job) -> tuple[str, str, str]:
        """(script folder, log file, exit code file) as absolute paths, same on the worker."""
        root = PurePosixPath(self.root_dir)
        script = root / job.path
        return (
            str(script.parent),
            str(root / job.log_path),
            str(PurePosixPath(self.job_state_dir(job).as_posix()) / "exit_code"),
        )

    def _exit_code_path(self, job: Job) -> Path:
        return self.job_state_dir(job) / "exit_code"

    # -- REST helpers (instance-types, instances) --------------------------------------------

    async def preview(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None = None,
    ) -> dict[str, Any]:
        """The instance a job with these needs would get, and the next cheapest ones."""
        self._require_configured()
        if not (memory_gib > 0) or cpus < 1:
            raise InvalidRequest("memory_gib must be > 0 and cpus >= 1")
        try:
            candidates = await self._candidates(
                memory_gib=memory_gib, cpus=cpus, spot=spot, instance_type=instance_type
            )
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc
        best = distinct_types(candidates, 10)
        return {"choice": best[0].public(), "candidates": [c.public() for c in best]}

    def _instance_row(self, inst: Mapping[str, Any], now: float) -> dict[str, Any]:
        tags = tags_of(inst)
        launch = timestamp(inst.get("LaunchTime"))
        try:
            price: float | None = float(tags[TAG_PRICE])
        except (KeyError, ValueError):
            price = None
        state = state_of(inst) or ""
        cost = None
        if price is not None and launch is not None:
            cost = round(price * max(0.0, now - launch) / 3600.0, 6)
        return {
            "instance_id": inst["InstanceId"],
            "instance_type": inst.get("InstanceType"),
            "spot": inst.get("InstanceLifecycle") == "spot",
            "state": state,
            "launch_time": launch,
            "job_id": tags.get(TAG_JOB),
            "owner": tags.get(TAG_OWNER),
            "name": tags.get("Name"),
            "hourly_price": price,
            "cost_so_far": cost,
            "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
        }

    async def _managed_live(self) -> dict[str, dict[str, Any]]:
        ec2 = await self.clients.ec2()
        filters = [
            *managed_filters(self.owner_tag),
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
        return await describe_instances(ec2, filters)

    async def list_instances(self) -> list[dict[str, Any]]:
        """This tool's instances (this owner) that are not terminated, oldest first."""
        try:
            found = await self._managed_live()
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc
        now = time.time()
        rows = [self._instance_row(i, now) for i in found.values()]
        rows.sort(key=lambda r: (r["launch_time"] or 0, r["instance_id"]))
        return rows

    async def terminate_instances(self, ids: Iterable[str]) -> list[str]:
        """Terminate these instances, all or none: every id must carry awsjobs:managed=true
        (and our owner, when one is configured); otherwise Forbidden and nothing is touched."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            raise InvalidRequest("instance_ids: give at least one instance id")
        bad = [i for i in wanted if not isinstance(i, str) or not INSTANCE_ID.match(i)]
        if bad:
            raise InvalidRequest(f"instance_ids: not instance ids: {', '.join(map(str, bad))}")
        ec2 = await self.clients.ec2()
        try:
            found = await describe_ids(ec2, wanted)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc
        refused = []
        for iid in wanted:
            tags = tags_of(found.get(iid, {}))
            if iid not in found or tags.get(TAG_MANAGED) != "true":
                refused.append(f"{iid} (not launched by awsjobs)")
            elif self.owner_tag and tags.get(TAG_OWNER) != self.owner_tag:
                refused.append(f"{iid} (owner {tags.get(TAG_OWNER) or 'unknown'})")
        if refused:
            raise Forbidden("Refusing to terminate " + ", ".join(refused) + "; nothing was done.")
        try:
            await terminate_ids(ec2, wanted)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"TerminateInstances failed: {error_message(exc)}") from exc
        self.log.info("awsjobs: terminated instances on request: %s", ", ".join(wanted))
        return wanted

    # -- orphans -----------------------------------------------------------------------------

    async def find_orphans(self, active_job_ids: set[str]) -> list[dict[str, Any]]:
        """Our live instances whose job is not active in the store (image builders, tagged
        with another awsjobs:role, are not orphans)."""
        found = await self._managed_live()
        now = time.time()
        orphans = []
        for inst in found.values():
            tags = tags_of(inst)
            if tags.get(TAG_ROLE, "job") != "job":
                continue
            if state_of(inst) in GONE:
                continue
            if tags.get(TAG_JOB) not in active_job_ids:
                orphans.append(self._instance_row(inst, now))
        return orphans

    async def reconcile(self, active_jobs: Iterable[Job | str]) -> dict[str, list[dict[str, Any]]]:
        """On server start: report (and, if `terminate_orphans`, terminate) our instances that
        belong to no active job. `active_jobs`: every job of this backend that is not finished
        (pending, launching, running, stopping)."""
        active = {j if isinstance(j, str) else j.id for j in active_jobs}
        try:
            orphans = await self.find_orphans(active)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc
        terminated: list[dict[str, Any]] = []
        for row in orphans:
            self.log.warning(
                "awsjobs: orphan instance %s (job %s, %s) belongs to no active job%s",
                row["instance_id"],
                row["job_id"],
                row["state"],
                "; terminating it" if self.terminate_orphans else "",
            )
        if orphans and self.terminate_orphans:
            ec2 = await self.clients.ec2()
            try:
                states = await terminate_ids(ec2, [r["instance_id"] for r in orphans])
            except (ClientError, BotoCoreError) as exc:
                raise BackendError(f"TerminateInstances failed: {error_message(exc)}") from exc
            terminated = [r for r in orphans if states.get(r["instance_id"]) is not None]
        return {"orphans": orphans, "terminated": terminated}

    # -- launch ------------------------------------------------------------------------------

    def request_stop(self, job_id: str) -> None:
        """Make an in-flight launch of this job give up as soon as possible (it terminates
        what it launched). `stop()` does this too; the service may call this early."""
        self._stopping.add(job_id)
        if self._monitor is not None:
            self._monitor.mark_stopping(job_id)

    async def launch(self, job: Job, record: RecordHandle) -> None:
        self.validate(job)
        argv = build_command(job, python=self.worker_python)
        cwd, log_path, exit_path = self._paths(job)
        commands = build_commands(
            job_id=job.id,
            argv=argv,
            cwd=cwd,
            log_path=log_path,
            exit_code_path=exit_path,
            env=job.env,
        )
        user_data = build_user_data(
            job_id=job.id,
            lifetime_minutes=job.max_lifetime_minutes,
            efs_file_system_id=self.efs_file_system_id,
            efs_access_point_id=self.efs_access_point_id,
            efs_use_iam=self.efs_use_iam,
            mount_path=self.mount_path,
            region=self.region,
            extra_commands=self.extra_user_data,
        )
        await asyncio.to_thread(self._prepare_files, job)
        try:
            candidates = await self._candidates(
                memory_gib=job.memory_gib,
                cpus=job.cpus,
                spot=job.spot,
                instance_type=job.requested_instance_type,
            )
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"choosing an instance type failed: {error_message(exc)}") from exc
        instance, chosen = await self._run_first_available(job, candidates, user_data)
        iid = instance["InstanceId"]
        launched_at = time.time()
        try:
            await record(
                {
                    "instance_id": iid,
                    "availability_zone": chosen.availability_zone,
                    "subnet_id": chosen.subnet_id,
                    "spot": chosen.spot,
                    "price_source": chosen.price_source,
                },
                instance_type=chosen.instance_type,
                hourly_price=chosen.hourly_price,
                command=argv,
                started_at=launched_at,
            )
        except BaseException:
            # Never leave an instance nobody knows about.
            await self._terminate_quietly([iid], job.id)
            raise
        if job.id in self._stopping:
            await self._terminate_quietly([iid], job.id)
            return  # stop() confirms the termination
        deadline = launched_at + job.max_lifetime_minutes * 60
        try:
            command_id = await self._send_command(job, iid, commands, deadline)
        except _LaunchTimeout as exc:
            confirmed = await self._terminate_quietly([iid], job.id)
            raise BackendError(
                f"instance {iid} did not accept the job's command through SSM within "
                f"{self.launch_timeout_seconds:g} s (is the SSM agent on the AMI, and does the "
                "instance profile allow AmazonSSMManagedInstanceCore? can the subnet reach "
                f"SSM?); the instance {'was terminated' if confirmed else 'is being terminated'}"
            ) from exc
        if command_id is not None:
            await record({"command_id": command_id})

    def _prepare_files(self, job: Job) -> None:
        state_dir = self.job_state_dir(job)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "exit_code").unlink(missing_ok=True)

    async def _run_first_available(
        self, job: Job, candidates: list[Candidate], user_data: str
    ) -> tuple[dict[str, Any], Candidate]:
        """RunInstances with the best candidate; on a capacity error the next ones."""
        failures: list[str] = []
        for attempt, candidate in enumerate(candidates[: max(1, self.max_launch_attempts)]):
            if job.id in self._stopping:
                break
            try:
                return await self._run_instance(job, candidate, user_data, attempt), candidate
            except ClientError as exc:
                code = error_code(exc)
                hint = CAPACITY_HINTS.get(code, "")
                failures.append(
                    f"{candidate.instance_type} in {candidate.availability_zone}: "
                    f"{error_message(exc)}{f' ({hint})' if hint else ''}"
                )
                if code not in CAPACITY_ERRORS:
                    break
                self.log.info("awsjobs: job %s: %s; trying the next", job.id, failures[-1])
            except BotoCoreError as exc:
                failures.append(f"{candidate.instance_type}: {exc}")
                break
        if job.id in self._stopping and not failures:
            raise BackendError("stopped before an instance was launched")
        raise BackendError("RunInstances failed: " + "; ".join(failures))

    def _run_params(
        self, job: Job, c: Candidate, user_data: str, attempt: int, image: tuple[str, str, str]
    ) -> dict[str, Any]:
        ami, root_device, _ = image
        name = PurePosixPath(job.path).name
        tags = {
            **{str(k): str(v) for k, v in self.extra_tags.items()},
            "Name": _tag_value(f"awsjobs-{name}-{job.id}"),
            TAG_JOB: job.id,
            TAG_OWNER: self.owner_tag or "unknown",
            TAG_MANAGED: "true",
            TAG_ROLE: "job",
        }
        if c.hourly_price is not None:
            tags[TAG_PRICE] = f"{c.hourly_price:.6f}"
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        params: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": c.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SubnetId": c.subnet_id,
            "UserData": user_data,  # plain text: botocore base64-encodes it
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": 2,
            },
            "BlockDeviceMappings": [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": int(self.root_volume_gib),
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
            # Idempotency on real AWS: a retried call returns the same instance.
            "ClientToken": f"awsjobs-{job.id}-{attempt}"[:64],
        }
        if self.security_group_ids:
            params["SecurityGroupIds"] = list(self.security_group_ids)
        if self.instance_profile_arn:
            params["IamInstanceProfile"] = {"Arn": self.instance_profile_arn}
        elif self.instance_profile_name:
            params["IamInstanceProfile"] = {"Name": self.instance_profile_name}
        if self.key_name:
            params["KeyName"] = self.key_name
        if c.spot:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        return params

    async def _run_instance(
        self, job: Job, c: Candidate, user_data: str, attempt: int
    ) -> dict[str, Any]:
        image = await self._resolve_image()
        params = self._run_params(job, c, user_data, attempt, image)
        ec2 = await self.clients.ec2()

        async def call() -> dict[str, Any]:
            async with self._run_slots:
                resp = await ec2.run_instances(**params)
            return dict(resp["Instances"][0])

        # RunInstances runs in its own task, shielded: if this launch is cancelled while the
        # call is in flight, the instance it creates is still learned and terminated (below),
        # and a concurrent stop() can await it.
        task = asyncio.get_running_loop().create_task(call(), name=f"awsjobs-run-{job.id}")
        self._inflight[job.id] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._terminate_if_launched)
            raise
        finally:
            if task.done():
                self._inflight.pop(job.id, None)
            else:
                task.add_done_callback(lambda _: self._inflight.pop(job.id, None))

    def _terminate_if_launched(self, task: asyncio.Task[dict[str, Any]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        iid = task.result()["InstanceId"]
        self.log.warning("awsjobs: terminating %s: its launch was cancelled", iid)
        asyncio.get_running_loop().create_task(self._terminate_quietly([iid], ""))

    async def _send_command(
        self, job: Job, iid: str, commands: list[str], deadline: float
    ) -> str | None:
        """SendCommand, retried while SSM does not know the instance yet.

        On purpose this does not wait for `DescribeInstanceInformation` to say Online (the
        issue's step 3): SendCommand itself answers `InvalidInstanceId` until the agent has
        registered, so retrying it with backoff is the same wait with one call fewer, and it
        is what AWS-TESTING.md recommends (moto has no DescribeInstanceInformation).
        Returns None if the instance went away meanwhile (the monitor then rules) or a Stop
        came. Raises _LaunchTimeout after `launch_timeout_seconds`.
        """
        ssm = await self.clients.ssm()
        started = time.monotonic()
        attempt = 0
        comment = f"awsjobs {job.id} {PurePosixPath(job.path).name}"
        while True:
            if job.id in self._stopping:
                return None
            params = send_command_parameters(
                instance_id=iid,
                commands=commands,
                timeout_seconds=int(deadline - time.time()),
                comment=comment,
            )
            try:
                resp = await ssm.send_command(**params)
                return str(resp["Command"]["CommandId"])
            except ClientError as exc:
                if error_code(exc) != "InvalidInstanceId" and not is_throttling(exc):
                    await self._terminate_quietly([iid], job.id)
                    raise BackendError(
                        f"SendCommand failed: {error_message(exc)}; instance {iid} terminated"
                    ) from exc
            except BotoCoreError as exc:
                # The call may have reached SSM: adopt a command it accepted rather than
                # sending a second one (the script also refuses to run twice).
                self.log.info("awsjobs: SendCommand for %s: %s", job.id, exc)
                existing = await self._find_command(iid)
                if existing:
                    return existing
            attempt += 1
            if time.monotonic() - started >= self.launch_timeout_seconds:
                raise _LaunchTimeout()
            if attempt % 5 == 0 and await self._instance_gone(iid):
                return None
            await asyncio.sleep(
                backoff_delay(attempt, self.ssm_retry_seconds, self.ssm_retry_max_seconds)
            )

    async def _find_command(self, iid: str) -> str | None:
        ssm = await self.clients.ssm()
        try:
            resp = await ssm.list_commands(InstanceId=iid)
        except (ClientError, BotoCoreError):
            return None
        for cmd in resp.get("Commands", []):
            if iid in cmd.get("InstanceIds", []) and cmd.get("DocumentName") == DOCUMENT:
                return str(cmd["CommandId"])
        return None

    async def _instance_gone(self, iid: str) -> bool:
        try:
            found = await describe_ids(await self.clients.ec2(), [iid])
        except (ClientError, BotoCoreError):
            return False
        return state_of(found.get(iid)) in GONE | HALTED

    async def _terminate_quietly(self, ids: list[str], job_id: str) -> bool:
        """Terminate and confirm, logging instead of raising. True once confirmed."""
        try:
            await self._terminate_confirmed(ids)
            return True
        except Exception as exc:
            self.log.warning(
                "awsjobs: could not confirm termination of %s (job %s): %s", ids, job_id, exc
            )
            return False

    async def _terminate_confirmed(self, ids: Iterable[str]) -> None:
        """TerminateInstances, then DescribeInstances until each instance is shutting-down,
        terminated or gone. Raises BackendError if that cannot be confirmed."""
        ids = sorted(set(ids))
        if not ids:
            return
        ec2 = await self.clients.ec2()
        try:
            await terminate_ids(ec2, ids)
            for attempt in range(max(1, self.stop_confirm_attempts)):
                found = await describe_ids(ec2, ids)
                alive = {i: state_of(found[i]) for i in ids if i in found}
                alive = {i: s for i, s in alive.items() if s not in GONE}
                if not alive:
                    return
                if attempt + 1 < self.stop_confirm_attempts:
                    await asyncio.sleep(self.stop_confirm_delay_seconds)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"terminating {', '.join(ids)}: {error_message(exc)}") from exc
        states = ", ".join(f"{i} is {s}" for i, s in alive.items())
        raise BackendError(f"termination not confirmed yet: {states}")

    # -- wait, stop, reattach ----------------------------------------------------------------

    async def wait(self, job: Job) -> Outcome:
        if job.id in self._stopping:
            return Outcome(JobState.STOPPED, error="stopped on request")
        iid = job.instance_id
        if not iid:
            return Outcome(JobState.FAILED, error="no instance was launched for this job")
        future = self.monitor.watch(
            job_id=job.id,
            instance_id=iid,
            command_id=job.handle.get("command_id"),
            exit_code_path=self._exit_code_path(job),
            lifetime_seconds=job.max_lifetime_minutes * 60.0,
            started_at=job.started_at or job.created_at,
        )
        if self._started:
            self.monitor.start()  # (again, if it had ended)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                self.monitor.unwatch(job.id)
            raise

    async def _job_instances(self, job: Job) -> dict[str, dict[str, Any]]:
        """Every instance of this job: the recorded one and any tagged with its id."""
        ec2 = await self.clients.ec2()
        found = await describe_instances(
            ec2,
            [
                {"Name": f"tag:{TAG_JOB}", "Values": [job.id]},
                {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            ],
        )
        iid = job.instance_id
        if iid and iid not in found:
            found.update(await describe_ids(ec2, [iid]))
        return found

    async def stop(self, job: Job) -> None:
        """Cancel the command (best effort), terminate every instance of the job (also one
        whose RunInstances is still in flight) and confirm. Idempotent."""
        self.request_stop(job.id)
        command_id = job.handle.get("command_id")
        if command_id:
            await self._cancel_command(str(command_id), job.instance_id)
        inflight = self._inflight.get(job.id)
        ids: set[str] = set()
        if inflight is not None:
            # RunInstances in flight: wait for its answer so its instance is not missed.
            done, _ = await asyncio.wait({inflight}, timeout=120)
            if inflight in done and not inflight.cancelled() and inflight.exception() is None:
                ids.add(inflight.result()["InstanceId"])
            elif inflight not in done:
                raise BackendError("an instance launch is still in flight; retrying")
        try:
            found = await self._job_instances(job)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc
        ids |= {i for i, inst in found.items() if state_of(inst) != "terminated"}
        await self._terminate_confirmed(ids)
        if ids:
            self.log.info("awsjobs: job %s stopped; terminated %s", job.id, ", ".join(sorted(ids)))
        if self._monitor is not None:
            self._monitor.resolve(job.id, Outcome(JobState.STOPPED, error="stopped on request"))

    async def _cancel_command(self, command_id: str, iid: str | None) -> None:
        # Best effort: TerminateInstances is what makes Stop safe. (moto has no CancelCommand.)
        try:
            ssm = await self.clients.ssm()
            kwargs: dict[str, Any] = {"CommandId": command_id}
            if iid:
                kwargs["InstanceIds"] = [iid]
            await ssm.cancel_command(**kwargs)
        except Exception as exc:
            self.log.info("awsjobs: CancelCommand %s: %s (ignored)", command_id, exc)

    async def reattach(self, job: Job) -> Outcome | None:
        """After a restart: None if the job's instance is alive with its command (the service
        then calls wait), else how it ended. Raises BackendError if AWS can't be read."""
        try:
            return await self._reattach(job)
        except (ClientError, BotoCoreError) as exc:
            raise BackendError(f"AWS: {error_message(exc)}") from exc

    async def _reattach(self, job: Job) -> Outcome | None:
        exit_code = await asyncio.to_thread(read_exit_code, self._exit_code_path(job))
        found = await self._job_instances(job)
        live = [i for i, inst in found.items() if state_of(inst) in ALIVE | HALTED]
        iid = job.instance_id
        if iid is None and found:
            # The server stopped before the id was recorded: the newest tagged instance.
            iid = max(found, key=lambda i: timestamp(found[i].get("LaunchTime")) or 0.0)
        instance = found.get(iid) if iid else None
        extra = [i for i in live if i != iid]
        if extra:
            self.log.warning("awsjobs: job %s has extra instances %s; terminating", job.id, extra)
            await self._terminate_quietly(extra, job.id)
        if exit_code is not None:
            if iid in live:
                await self._terminate_confirmed([iid])
            return classify(instance, exit_code, now=time.time(), deadline=0.0)
        if iid is None:
            since = time.time() - max(job.created_at, job.updated_at)
            if since < self.reattach_grace_seconds:
                # EC2 is eventually consistent: an instance launched just before the restart
                # may not be listed yet. The service retries reattach on BackendError.
                raise BackendError(f"no instance of job {job.id} is visible yet")
            return Outcome(
                JobState.FAILED, error="the server stopped before an instance was launched"
            )
        if state_of(instance) in ALIVE:
            if not job.handle.get("command_id") and not await self._find_command(iid):
                await self._terminate_confirmed([iid])
                return Outcome(
                    JobState.FAILED,
                    error="the server stopped while the job was launching; its instance "
                    f"{iid} was terminated",
                )
            return None
        start = timestamp(instance.get("LaunchTime")) if instance else None
        deadline = (start or job.started_at or job.created_at) + job.max_lifetime_minutes * 60
        outcome = classify(instance, None, now=time.time(), deadline=deadline)
        if outcome is not None and state_of(instance) in HALTED:
            await self._terminate_confirmed([iid])
        if outcome is not None and outcome.state is JobState.FAILED:
            detail = await self._command_detail(job, iid)
            if detail:
                outcome = Outcome(JobState.FAILED, error=f"{outcome.error}; {detail}")
        return outcome

    async def _command_detail(self, job: Job, iid: str) -> str | None:
        command_id = job.handle.get("command_id")
        if not command_id:
            return None
        ssm = await self.clients.ssm()
        try:
            inv = await ssm.get_command_invocation(CommandId=command_id, InstanceId=iid)
        except (ClientError, BotoCoreError):
            return None
        if inv.get("Status") in ("Pending", "InProgress", "Delayed"):
            return None
        return outcome_for_command(inv).error
