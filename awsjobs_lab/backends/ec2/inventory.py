"""The EC2 backend's instance inventory: the instance preview before launch, this tool's
instances (listed, terminated on request), orphans (ours, but no active job's: a job's worker
whose job is not active, an image builder past its deadline) and the sweep of instances past
their deadline (`aws.sweep`): at start (with the orphans) and every `sweep_interval_seconds`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from ...aws import tags
from ...aws.clients import AWSClients
from ...aws.errors import aws_errors
from ...aws.fleet import ON_DEMAND_STRATEGY, SPOT_STRATEGY
from ...aws.instances import (
    GONE,
    LIVE_STATES,
    Instances,
    describe_ids,
    describe_instances,
    launch_time,
    managed_filters,
    state_filter,
    state_of,
    terminate,
)
from ...aws.select import FLEET_TYPES, Candidate, distinct_types, fleet_pools, zones_of
from ...aws.sweep import (
    SweepReport,
    deadline_of,
    is_expired,
    sweep_instances,
    sweep_launch_templates,
)
from ...errors import Forbidden, InvalidRequest
from ...gpus import NO_GPU, GpuNeed
from ...models import Job
from ...patterns import INSTANCE_ID
from .choice import InstanceChoice
from .settings import EC2Settings


def instance_row(inst: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One instance as `GET instances` shows it."""
    found = tags.tags_of(inst)
    launched = launch_time(inst)
    try:
        price: float | None = float(found[tags.HOURLY_PRICE])
    except (KeyError, ValueError):
        price = None
    cost = None
    if price is not None and launched is not None:
        cost = round(price * max(0.0, now - launched) / 3600.0, 6)
    return {
        "instance_id": inst["InstanceId"],
        "instance_type": inst.get("InstanceType"),
        "spot": inst.get("InstanceLifecycle") == "spot",
        "state": state_of(inst) or "",
        "launch_time": launched,
        "job_id": found.get(tags.JOB_ID),
        "role": found.get(tags.ROLE, tags.ROLE_JOB),
        "expires_at": deadline_of(inst),
        "owner": found.get(tags.OWNER),
        "name": found.get(tags.NAME),
        "hourly_price": price,
        "cost_so_far": cost,
        "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
    }


def launch_offer(pools: list[Candidate], *, spot: bool) -> dict[str, Any]:
    """What one launch will offer EC2 Fleet (the preview's `tried`): its types, best first,
    its zones, how many pools, the allocation strategy, and the lowest known price."""
    prices = [c.hourly_price for c in pools if c.hourly_price is not None]
    return {
        "types": [c.instance_type for c in distinct_types(pools, FLEET_TYPES)],
        "zones": zones_of(pools),
        "pools": len(pools),
        "strategy": SPOT_STRATEGY if spot else ON_DEMAND_STRATEGY,
        "spot": spot,
        "from_price": min(prices) if prices else None,
    }


class Inventory:
    """Implements `InstanceInventory` (base.py) and the orphan check for `EC2Backend`."""

    def __init__(self, settings: EC2Settings, clients: AWSClients, choice: InstanceChoice) -> None:
        self.settings = settings
        self.clients = clients
        self.choice = choice
        self._sweeper: asyncio.Task[None] | None = None

    async def preview(
        self,
        *,
        memory_gib: float,
        cpus: int,
        spot: bool,
        instance_type: str | None = None,
        gpus: GpuNeed = NO_GPU,
    ) -> dict[str, Any]:
        """The instance a job with these needs would get, the next cheapest types, and what
        one launch will offer EC2 Fleet (`tried`)."""
        self.settings.require_configured()
        if not (memory_gib > 0) or cpus < 1:
            raise InvalidRequest("memory_gib must be > 0 and cpus >= 1")
        with aws_errors("choosing an instance type"):
            candidates = await self.choice.candidates(
                memory_gib=memory_gib, cpus=cpus, spot=spot, instance_type=instance_type, gpus=gpus
            )
        pools = fleet_pools(candidates)
        best = distinct_types(pools, FLEET_TYPES)
        return {
            "choice": best[0].public(),
            "candidates": [c.public() for c in best],
            "tried": launch_offer(pools, spot=spot),
        }

    async def managed_live(self) -> Instances:
        """Our instances (this owner) that are not terminated. AWS errors propagate."""
        filters = [*managed_filters(self.settings.owner_tag), state_filter(LIVE_STATES)]
        return await describe_instances(await self.clients.ec2(), filters)

    async def list_instances(self) -> list[dict[str, Any]]:
        """This tool's instances (this owner) that are not terminated, oldest first."""
        with aws_errors("listing this tool's instances"):
            found = await self.managed_live()
        now = time.time()
        rows = [instance_row(i, now) for i in found.values()]
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
        with aws_errors("looking up the instances to terminate"):
            found = await describe_ids(ec2, wanted)
        refused = self._not_ours(wanted, found)
        if refused:
            raise Forbidden("Refusing to terminate " + ", ".join(refused) + "; nothing was done.")
        with aws_errors("TerminateInstances failed"):
            await terminate(ec2, wanted)
        self.settings.log.info("awsjobs: terminated instances on request: %s", ", ".join(wanted))
        return wanted

    def _not_ours(self, wanted: list[str], found: Instances) -> list[str]:
        """Each id that this tool (and this owner) did not launch, with the reason."""
        owner = self.settings.owner_tag
        refused = []
        for iid in wanted:
            found_tags = tags.tags_of(found.get(iid, {}))
            if iid not in found or found_tags.get(tags.MANAGED) != tags.TRUE:
                refused.append(f"{iid} (not launched by awsjobs)")
            elif owner and found_tags.get(tags.OWNER) != owner:
                refused.append(f"{iid} (owner {found_tags.get(tags.OWNER) or 'unknown'})")
        return refused

    async def find_orphans(self, active_job_ids: set[str]) -> list[dict[str, Any]]:
        """Our live instances whose job is not active in the store, and image builders (they
        have no job) past their deadline. AWS errors propagate."""
        found = await self.managed_live()
        now = time.time()
        orphans = []
        for inst in found.values():
            found_tags = tags.tags_of(inst)
            if state_of(inst) in GONE:
                continue
            if found_tags.get(tags.ROLE, tags.ROLE_JOB) != tags.ROLE_JOB:
                orphaned = is_expired(inst, now)  # an image builder, or a future role
            else:
                orphaned = found_tags.get(tags.JOB_ID) not in active_job_ids
            if orphaned:
                orphans.append(instance_row(inst, now))
        return orphans

    async def reconcile(self, active_jobs: Iterable[Job | str]) -> dict[str, list[dict[str, Any]]]:
        """On server start: report (and, if `terminate_orphans`, terminate) our instances that
        belong to no active job, then sweep those past their deadline (`swept`).
        `active_jobs`: every job of this backend that is not finished (pending, launching,
        running, stopping)."""
        active = {j if isinstance(j, str) else j.id for j in active_jobs}
        with aws_errors("looking for orphaned instances"):
            orphans = await self.find_orphans(active)
        terminating = self.settings.terminate_orphans
        for row in orphans:
            self.settings.log.warning(
                "awsjobs: orphan instance %s (job %s, %s) belongs to no active job%s",
                row["instance_id"],
                row["job_id"],
                row["state"],
                "; terminating it" if terminating else "",
            )
        terminated: list[dict[str, Any]] = []
        if orphans and terminating:
            with aws_errors("TerminateInstances failed"):
                states = await terminate(
                    await self.clients.ec2(), [r["instance_id"] for r in orphans]
                )
            terminated = [r for r in orphans if states.get(r["instance_id"]) is not None]
        return {"orphans": orphans, "terminated": terminated, "swept": await self._sweep_logged()}

    # -- the sweep: instances past their deadline (aws.sweep) ---------------------------------

    async def sweep(self, *, dry_run: bool = False) -> SweepReport:
        """Terminate (unless `dry_run`) this owner's instances past their deadline plus
        `sweep_grace_seconds`, and confirm. Listing errors propagate."""
        ec2 = await self.clients.ec2()
        report = await sweep_instances(
            ec2,
            owner=self.settings.owner_tag,
            grace_seconds=self.settings.sweep_grace_seconds,
            dry_run=dry_run,
            confirm_attempts=self.settings.stop_confirm_attempts,
            confirm_delay=self.settings.stop_confirm_delay_seconds,
            consistency_window=self.settings.consistency_window_seconds,
        )
        await sweep_launch_templates(ec2, report, owner=self.settings.owner_tag)
        log = self.settings.log
        for template_id in report.launch_templates:
            done = "" if dry_run else "; deleted"
            log.warning("awsjobs: sweep: launch template %s left by a crash%s", template_id, done)
        for template_id, problem in report.launch_template_errors.items():
            log.warning("awsjobs: sweep: launch template %s: %s", template_id or "-", problem)
        for row in report.expired:
            log.warning(
                "awsjobs: sweep: instance %s (%s, job %s) is past its deadline %s%s",
                row.instance_id,
                row.role,
                row.job_id or "-",
                row.expires_at,
                "" if dry_run else "; terminating it",
            )
        for iid, state in report.unconfirmed.items():
            log.warning("awsjobs: sweep: termination of %s not confirmed: %s", iid, state)
        return report

    async def _sweep_logged(self) -> list[dict[str, Any]]:
        """The sweep; what it terminated ([] when AWS failed: logged)."""
        try:
            report = await self.sweep()
        except Exception as exc:  # AWS unreachable, throttled, ...: the next sweep retries
            self.settings.log.warning("awsjobs: sweep failed: %s", exc)
            return []
        return [asdict(row) for row in report.expired if row.instance_id in report.terminated]

    def start_sweeping(self) -> None:
        """The sweep every `sweep_interval_seconds` (0: never) until `close()`; the first one
        is part of the start-up `reconcile`."""
        if self.settings.sweep_interval_seconds <= 0 or self._sweeper is not None:
            return
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_forever(), name="awsjobs-ec2-sweep"
        )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_seconds)
            await self._sweep_logged()

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
