"""Which instance a job gets: the worker image (resolved once), the zones of the configured
subnets, the catalogue of types with their prices, and the candidates ranked cheapest first."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from ...aws.catalog import Catalog, OnDemandPrices
from ...aws.clients import AWSClients
from ...aws.errors import error_code, error_message
from ...aws.launch import describe_image
from ...aws.select import Candidate, rank
from ...gpus import NO_GPU, GpuNeed
from ...models import Job
from ..base import BackendNotConfigured
from .settings import EC2Settings


class WorkerImage(NamedTuple):
    image_id: str
    root_device: str
    architecture: str
    root_snapshot_gib: int = 0  # the root volume may not be smaller (0: unknown)


class InstanceChoice:
    """Ranks the instance types and zones a job may run in. AWS errors propagate."""

    def __init__(self, settings: EC2Settings, clients: AWSClients) -> None:
        self.settings = settings
        self.clients = clients
        self.catalog = Catalog(clients, architecture=settings.architecture)
        self.prices = OnDemandPrices(
            clients,
            cache_dir=settings.cache_dir,
            max_age_seconds=settings.price_cache_max_age_hours * 3600,
        )
        self._subnets: list[tuple[str, str]] | None = None
        self._image: WorkerImage | None = None
        self._image_lock = asyncio.Lock()

    async def image(self) -> WorkerImage:
        """The workers' AMI, its root device and architecture, resolved once (the AMI's own
        architecture wins over the setting: only matching types are then considered)."""
        async with self._image_lock:
            if self._image is not None:
                return self._image
            settings = self.settings
            ami = settings.image_id
            if not ami:
                ssm = await self.clients.ssm()
                resp = await ssm.get_parameter(Name=settings.image_ssm_parameter)
                ami = str(resp["Parameter"]["Value"])
            root_device, arch = settings.root_device_name, settings.architecture
            snapshot_gib = 0
            described = await describe_image(await self.clients.ec2(), ami)
            if described:
                root_device = described.get("RootDeviceName") or root_device
                snapshot_gib = root_snapshot_gib(described, root_device)
                image_arch = described.get("Architecture")
                if image_arch and image_arch != arch:
                    settings.log.info("awsjobs: image %s is %s; using that", ami, image_arch)
                    arch = image_arch
            self.catalog.architecture = arch
            self._image = WorkerImage(ami, root_device, arch, snapshot_gib)
            return self._image

    async def subnet_zones(self) -> list[tuple[str, str]]:
        """(subnet id, availability zone) of the configured subnets, in configured order."""
        if self._subnets is None:
            ec2 = await self.clients.ec2()
            try:
                resp = await ec2.describe_subnets(SubnetIds=list(self.settings.subnet_ids))
            except ClientError as exc:
                if error_code(exc).startswith("InvalidSubnet"):
                    raise BackendNotConfigured(
                        f"c.EC2Backend.subnet_ids: {error_message(exc)}"
                    ) from exc
                raise
            zones = {s["SubnetId"]: s["AvailabilityZone"] for s in resp.get("Subnets", [])}
            self._subnets = [(s, zones[s]) for s in self.settings.subnet_ids if s in zones]
        return self._subnets

    async def candidates(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None,
        gpus: GpuNeed = NO_GPU,
    ) -> list[Candidate]:
        """Where a job with these needs may run, cheapest first."""
        await self.image()
        subnets = await self.subnet_zones()
        if not subnets:
            raise BackendNotConfigured(
                "None of c.EC2Backend.subnet_ids exists in region " + self.settings.region
            )
        return await rank(
            self.catalog,
            self.prices,
            memory_gib=memory_gib,
            cpus=cpus,
            spot=spot,
            subnets=subnets,
            policy=self.settings.policy(),
            instance_type=instance_type,
            gpus=gpus,
        )

    async def candidates_for(self, job: Job) -> list[Candidate]:
        """Where `job` may run (its resources, market, type and GPUs), cheapest first."""
        return await self.candidates(
            memory_gib=job.memory_gib,
            cpus=job.cpus,
            spot=job.spot,
            instance_type=job.requested_instance_type,
            gpus=job.gpu_need,
        )

    async def warm_prices(self) -> None:
        """Read the on-demand prices ahead of the first preview; never fails."""
        try:
            table = await self.prices.table()
            self.settings.log.info("awsjobs: on-demand prices from %s", table.label)
        except Exception as exc:  # never fatal: previews fall back on their own
            self.settings.log.info("awsjobs: could not warm the on-demand prices: %s", exc)


def root_snapshot_gib(image: dict[str, Any], root_device: str) -> int:
    """The size of the AMI's root snapshot (DescribeImages' BlockDeviceMappings), 0 if not
    given: EC2 refuses a smaller root volume (InvalidBlockDeviceMapping)."""
    for mapping in image.get("BlockDeviceMappings") or []:
        if mapping.get("DeviceName") == root_device:
            return int((mapping.get("Ebs") or {}).get("VolumeSize") or 0)
    return 0
