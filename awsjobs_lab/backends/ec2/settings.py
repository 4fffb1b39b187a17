"""The EC2 backend's settings (`c.EC2Backend.*`) and its configuration checks.

Minimum configuration (`is_configured`): `image_id` (or `image_ssm_parameter`), `subnet_ids`,
the job files' storage, and `instance_profile_name` (or `instance_profile_arn`): without an
instance profile the SSM agent can't register and no command could ever reach the worker.
Storage `"efs"` needs `efs_file_system_id`, and the server's root must lie inside
`efs_mount_path` (default: the server root itself), so that absolute paths are the same on the
server and on the worker. Storage `"s3"` needs `s3_bucket`: the job's folder travels through
the bucket (`s3mode.py`).
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any, ClassVar

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from ...aws import tags
from ...aws.select import Policy
from ...aws.ssm import MAX_EXECUTION_TIMEOUT
from ...errors import InvalidRequest
from ...models import Job
from ..base import Backend, BackendNotConfigured, Capabilities

STORAGES = ("efs", "s3")


class EC2Settings(Backend):
    """What an EC2 backend is configured with, and whether that is enough to run jobs."""

    id: ClassVar[str] = "ec2"
    label: ClassVar[str] = "AWS EC2"
    capabilities: Capabilities = Capabilities(
        spot=True, instance_types=True, instances=True, hourly_price=True, gpus=True
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
    scheduler_role_arn = Unicode(
        "",
        help="IAM role EventBridge Scheduler assumes to start the workers of EC2 schedules "
        "(trusts scheduler.amazonaws.com; allows ec2:RunInstances, ec2:CreateTags and "
        "iam:PassRole on the workers' role: README, 'Schedules on EC2'). Empty: EC2 schedules "
        "are refused.",
    ).tag(config=True)
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

    # -- S3 instead of a shared file system ---------------------------------------------------
    storage = Enum(
        list(STORAGES),
        help="How a job's files reach its worker: 'efs' (the shared file system) or 's3' (the "
        "script's folder is uploaded to s3_bucket, the worker downloads it, streams its log "
        "there and uploads its outputs, which come back beside the script). Default: 'efs' "
        "while efs_file_system_id is set, else 's3' when s3_bucket is set.",
    ).tag(config=True)
    s3_bucket = Unicode("", help="Bucket of the jobs' files when storage is 's3'.").tag(config=True)
    s3_prefix = Unicode(
        "awsjobs/", help="Key prefix in s3_bucket; each job's files go under <prefix><owner>/<id>/."
    ).tag(config=True)
    s3_max_upload_mib = Int(
        2048,
        help="A job whose folder is larger than this (MiB, after the ignore rules) is refused "
        "with the biggest files named.",
    ).tag(config=True)

    s3_log_interval_seconds = Float(
        3.0,
        help="How often the server looks for a running S3 job's new log parts and its exit "
        "code (one ListObjectsV2 and one GetObject per job); the worker sends its log every 3 s.",
    ).tag(config=True)
    s3_stop_grace_seconds = Float(
        60.0,
        min=0.0,
        help="A Stop (or the lifetime's end) of a running S3 job first sends SIGTERM to the job, "
        "then waits this long for the worker to upload its outputs and exit code before the "
        "instance is terminated anyway. The worker also sends SIGTERM this long (at most 90 s, "
        "at most half the lifetime) before its own lifetime deadline. 0: terminate at once.",
    ).tag(config=True)

    # -- choice of instance ------------------------------------------------------------------
    allowed_families = List(
        Unicode(),
        help="Only these instance families (e.g. ['m7i', 'c7a', 'r7*']); empty: all.",
    ).tag(config=True)
    denied_families = List(
        Unicode(), help="Never these families (e.g. ['x2*', 'u-*']); empty: none denied."
    ).tag(config=True)
    include_burstable_types = Bool(
        False,
        help="Allow burstable types (T families: their CPU credits run out during long jobs). "
        "Left out by EC2's own burstable-performance-supported filter, whatever their name.",
    ).tag(config=True)
    include_accelerated_types = Bool(
        False,
        help="Let automatic choice pick types with accelerators: GPU, FPGA, Inferentia/Trainium, "
        "media transcoders (a requested type is always allowed).",
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
        help="Shortly after the start, terminate our tagged instances that belong to no "
        "active job. Off by default: they are only logged (each still halts itself at its "
        "lifetime deadline), because another server with the same owner may be running them.",
    ).tag(config=True)
    sweep_interval_seconds = Float(
        600.0,
        help="How often the server terminates our instances past their deadline (tag "
        "awsjobs:expires-at) plus sweep_grace_seconds, as `awsjobs sweep` does; also at "
        "start. 0: never.",
    ).tag(config=True)
    sweep_grace_seconds = Float(
        600.0, help="How long past its deadline an instance is left before the sweep ends it."
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
    ssm_access_denied_grace_seconds = Float(
        120.0,
        help="While a new instance's SSM agent registers, SendCommand may answer "
        "AccessDeniedException under the tag-conditioned IAM policy: it is retried for this "
        "many seconds, as for an agent not registered yet; a denial after that fails the job "
        "(and names the IAM statement to check). 0: a denial fails the job at once.",
    ).tag(config=True)
    ssm_retry_seconds = Float(
        2.0,
        help="Pause between SendCommand attempts while a new instance's SSM agent registers: a "
        "steady cadence that does not grow, so the command goes out within one pause of the "
        "registration. After the first minute, every 5th attempt first asks EC2 whether the "
        "instance is gone, and the pause before it is doubled. Also the base of the backoff "
        "when SSM throttles (ssm_retry_max_seconds).",
    ).tag(config=True)
    ssm_retry_max_seconds = Float(
        15.0,
        help="Longest pause after SSM throttles SendCommand: throttling answers in a row back "
        "off exponentially, with jitter, from ssm_retry_seconds up to this. The wait for the "
        "agent's registration is not capped by it (a steady ssm_retry_seconds).",
    ).tag(config=True)
    reattach_grace_seconds = Float(
        120.0,
        help="After a restart, how long a job with no visible instance is looked for again "
        "before it is declared never launched (EC2 lists new instances with a delay).",
    ).tag(config=True)
    consistency_window_seconds = Float(
        300.0,
        help="EC2 is eventually consistent: for a while after RunInstances the new instance may "
        "be unknown to EC2 (NotFound, not listed). Within this many seconds of its launch such "
        "an instance counts as unknown, never as gone; after it, as gone.",
    ).tag(config=True)
    launch_cleanup_timeout_seconds = Float(
        900.0,
        help="When a launch fails after its instance exists, how long to keep trying to "
        "terminate it (with backoff) before the job fails anyway, saying the instance may still "
        "run until its own lifetime deadline.",
    ).tag(config=True)
    cleanup_retry_seconds = Float(
        2.0,
        help="First pause between those termination attempts, and between repeats of a "
        "RunInstances whose answer was lost (doubled each time).",
    ).tag(config=True)
    stop_confirm_attempts = Int(
        3, help="DescribeInstances checks after TerminateInstances before a Stop is retried."
    ).tag(config=True)
    stop_confirm_delay_seconds = Float(1.0, help="Pause between those checks.").tag(config=True)

    @default("region")
    def _default_region(self) -> str:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    @default("storage")
    def _default_storage(self) -> str:
        return "s3" if self.s3_bucket and not self.efs_file_system_id else "efs"

    @default("owner")
    def _default_owner(self) -> str:
        return tags.user_name()

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return os.path.join(jupyter_data_dir(), "awsjobs_lab", "cache")

    # -- configuration -----------------------------------------------------------------------

    def missing_settings(self) -> list[str]:
        """The settings still to set before jobs can run here, as c.EC2Backend.* names."""
        missing = []
        if not (self.image_id or self.image_ssm_parameter):
            missing.append("image_id")
        if not self.subnet_ids:
            missing.append("subnet_ids")
        if self.storage == "efs" and not self.efs_file_system_id:
            missing.append("efs_file_system_id")
        if self.storage == "s3" and not self.s3_bucket:
            missing.append("s3_bucket")
        if not (self.instance_profile_name or self.instance_profile_arn):
            missing.append("instance_profile_name")
        return missing

    def mount_problem(self) -> str | None:
        """Why workers could not see the server's files at the same paths, or None."""
        if not self.root_dir or self.storage != "efs":
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
        return tags.owner_tag_value(self.owner)

    @property
    def instance_profile(self) -> str:
        """The workers' instance profile, by ARN or by name ('' when not set)."""
        return self.instance_profile_arn or self.instance_profile_name

    @property
    def uses_s3(self) -> bool:
        """Whether jobs' files travel through S3 (no shared file system)."""
        return self.storage == "s3"

    @property
    def owner_area(self) -> str:
        """The owner part of a job's S3 keys (`<prefix><owner>/<id>/`)."""
        return self.owner_tag or tags.UNKNOWN_OWNER

    @property
    def mount_path(self) -> str:
        """Where workers mount EFS: `efs_mount_path`, or the server root."""
        return self.efs_mount_path or str(self.root_dir)

    def is_configured(self) -> bool:
        return not self.missing_settings() and self.mount_problem() is None

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data.update(
            {
                "region": self.region,
                "owner": self.owner,
                "missing_settings": [f"c.EC2Backend.{m}" for m in self.missing_settings()],
                "problem": self.mount_problem(),
                "architecture": self.architecture,
                "efs_mount_path": self.mount_path,
                "storage": self.storage,
                "spot_supported": True,
                "max_lifetime_minutes": self.max_lifetime_minutes,
            }
        )
        return data

    def configuration_problem(self) -> str | None:
        """None when jobs can run here, else what to set (shown to users as is)."""
        missing = self.missing_settings()
        if missing:
            names = ", ".join(f"c.EC2Backend.{m}" for m in missing)
            hint = ""
            if "efs_file_system_id" in missing:
                hint = " (or, without EFS, c.EC2Backend.s3_bucket: the jobs' files go through S3)"
            return f"The EC2 backend is not configured: set {names}{hint}."
        problem = self.mount_problem()
        if problem:
            return f"The EC2 backend is misconfigured: {problem}."
        return None

    def require_configured(self) -> None:
        problem = self.configuration_problem()
        if problem:
            raise BackendNotConfigured(problem)

    @property
    def max_lifetime_minutes(self) -> int:
        """The longest lifetime a job may ask for here: SSM ends a command at its
        executionTimeout, at most 48 hours (in the server's minutes; tests shrink them)."""
        return int(MAX_EXECUTION_TIMEOUT // self.lifetime_unit_seconds)

    def validate(self, job: Job) -> None:
        self.require_configured()
        if job.max_lifetime_minutes > self.max_lifetime_minutes:
            raise InvalidRequest(
                f"On EC2 a job may run at most 48 hours ({self.max_lifetime_minutes} minutes): "
                "SSM ends the job's command then. Ask for a shorter max lifetime."
            )
        for name in job.env:
            if name.upper().startswith("AWSJOBS_"):
                raise InvalidRequest(f"env: {name} is reserved (names starting with AWSJOBS_).")

    def policy(self) -> Policy:
        """Which instance types automatic choice may consider."""
        return Policy(
            allowed_families=tuple(self.allowed_families),
            denied_families=tuple(self.denied_families),
            include_accelerated=self.include_accelerated_types,
            include_burstable=self.include_burstable_types,
            max_priced_types=self.max_priced_types,
        )
