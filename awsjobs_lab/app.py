"""The AWSJobs server extension: configuration (`c.AWSJobs.*`), handlers, start and stop."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int, List, Unicode, default, validate

from .aws.tags import user_name
from .backends.base import Backend
from .errors import AWSJobsError
from .gc_tuning import tune_garbage_collection
from .handlers import handler_table
from .logs import DEFAULT_CHUNK_BYTES
from .requests import MAX_CPUS, MAX_MEMORY_GIB, LaunchDefaults
from .schedule_handlers import schedule_handler_table
from .schedules.cron import local_zone_name
from .schedules.service import ScheduleOptions, ScheduleService
from .service import JobService, ServiceOptions
from .store import JobStore

# Backend id → "module.Class", imported only when enabled.
BACKEND_CLASSES: dict[str, str] = {
    "local": "awsjobs_lab.backends.local.LocalBackend",
    "ec2": "awsjobs_lab.backends.ec2.EC2Backend",
}
# What the instance endpoints say when no enabled backend has instances (EC2 is the one that has).
NO_INVENTORY = 'The EC2 backend is not enabled on this server: add "ec2" to c.AWSJobs.backends'


class AWSJobs(ExtensionApp):
    """Run notebooks and scripts as jobs, on this machine or on EC2."""

    name = "awsjobs_lab"
    load_other_extensions = True

    data_path = Unicode(
        help="Folder of the extension's own state (the job database `jobs.sqlite`). "
        "Default: <jupyter data dir>/awsjobs_lab.",
    ).tag(config=True)

    @default("data_path")
    def _default_data_path(self) -> str:
        return str(Path(jupyter_data_dir()) / "awsjobs_lab")

    backends = List(
        Unicode(),
        default_value=["local", "ec2"],
        help="Ids of the backends to enable, among: " + ", ".join(BACKEND_CLASSES),
    ).tag(config=True)

    default_backend = Unicode("local", help="Backend of a job that names none.").tag(config=True)
    default_memory_gib = Float(4.0, help="Memory (GiB) of a job that asks for none.").tag(
        config=True
    )
    default_cpus = Int(1, help="CPUs of a job that asks for none.").tag(config=True)
    default_spot = Bool(False, help="Whether EC2 jobs use spot instances by default.").tag(
        config=True
    )
    max_lifetime_minutes = Int(
        240, help="Max lifetime (minutes) of a job that asks for none; then it is stopped."
    ).tag(config=True)
    max_allowed_lifetime_minutes = Int(
        10080, help="The longest max lifetime (minutes) a job may ask for."
    ).tag(config=True)
    log_chunk_bytes = Int(
        DEFAULT_CHUNK_BYTES, help="Most bytes of log returned by one GET jobs/{id}/log."
    ).tag(config=True)
    lifetime_unit_seconds = Float(
        60.0,
        help="Seconds in one minute of max_lifetime_minutes. Only tests change it.",
    ).tag(config=True)
    stop_retry_seconds = Float(
        2.0, help="First delay before retrying a stop the backend could not confirm (doubled)."
    ).tag(config=True)

    max_active_instances = Int(
        0,
        help="Most instances this server's jobs may have launching or running at once "
        "(backends with an hourly price, e.g. EC2); a launch past it is refused. 0: no cap.",
    ).tag(config=True)
    max_hourly_spend = Float(
        0.0,
        help="Most USD per hour, summed over the hourly prices of this server's launching and "
        "running instances; a launch that would pass it is refused. 0: no cap.",
    ).tag(config=True)

    missed_run_grace_minutes = Int(
        60,
        help="A local schedule's run missed while the server was down fires once at start if "
        "it is younger than this (minutes); older ones are recorded as missed.",
    ).tag(config=True)

    @validate("default_memory_gib")
    def _check_memory(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 < value <= MAX_MEMORY_GIB:
            raise ValueError(f"default_memory_gib must be above 0 and at most {MAX_MEMORY_GIB}")
        return value

    @validate("default_cpus")
    def _check_cpus(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 1 <= value <= MAX_CPUS:
            raise ValueError(f"default_cpus must be from 1 to {MAX_CPUS}")
        return value

    @validate("max_lifetime_minutes", "max_allowed_lifetime_minutes", "log_chunk_bytes")
    def _check_positive(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1")
        return value

    @validate("missed_run_grace_minutes")
    def _check_grace(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 0:
            raise ValueError("missed_run_grace_minutes must be 0 or more")
        return value

    @validate("max_active_instances", "max_hourly_spend")
    def _check_cap(self, proposal: Any) -> int | float:
        value: int | float = proposal["value"]  # an int or a float, as the trait is
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{proposal['trait'].name} must be 0 (no cap) or more")
        return value

    @validate("lifetime_unit_seconds", "stop_retry_seconds")
    def _check_seconds(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise ValueError(f"{proposal['trait'].name} must be above 0")
        return value

    service: JobService | None = None
    schedules: ScheduleService | None = None
    _backends: dict[str, Backend] | None = None  # made when the extension is linked

    def _load_backend(self, backend_id: str, root_dir: str) -> Backend | None:
        """The enabled backend `backend_id`, or None (logged) if it cannot be loaded."""
        target = BACKEND_CLASSES.get(backend_id)
        if target is None:
            self.log.error("awsjobs: unknown backend %r in c.AWSJobs.backends", backend_id)
            return None
        module_name, class_name = target.rsplit(".", 1)
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            backend: Backend = cls(parent=self)
        except Exception:
            self.log.exception("awsjobs: the %s backend cannot be loaded; skipped", backend_id)
            return None
        backend.root_dir = root_dir
        backend.lifetime_unit_seconds = self.lifetime_unit_seconds
        return backend

    def _root_dir(self) -> str:
        assert self.serverapp is not None
        return str(Path(self.serverapp.root_dir).expanduser().resolve())

    def _prepared_backends(self) -> dict[str, Backend]:
        """The enabled backends, each told to begin what takes long to get ready as soon as it
        is loaded: the local backend's warm runner then starts before the EC2 backend's
        imports (aiobotocore: a third of a second), not after them."""
        root_dir = self._root_dir()
        backends: dict[str, Backend] = {}
        for backend_id in self.backends:
            backend = self._load_backend(backend_id, root_dir)
            if backend is None:
                continue
            backends[backend_id] = backend
            try:
                backend.prepare()
            except Exception:  # it only gets a head start: `start` still runs
                self.log.exception("awsjobs: preparing the %s backend failed", backend_id)
        return backends

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        super()._link_jupyter_server_extension(serverapp)
        # The earliest moment our config is known, half a second or more before
        # initialize_settings (the server builds its web app in between): the warm
        # notebook runner's imports then overlap the server's start.
        self._backends = self._prepared_backends()

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        root_dir = self._root_dir()
        backends = self._backends if self._backends is not None else self._prepared_backends()
        for backend in backends.values():
            backend.root_dir = root_dir  # as the server has it now
        default_backend = self.default_backend
        if default_backend not in backends and backends:
            fallback = next(iter(backends))
            self.log.warning(
                "awsjobs: default backend %r is not enabled; using %r", default_backend, fallback
            )
            default_backend = fallback
        options = ServiceOptions(
            defaults=LaunchDefaults(
                backend=default_backend,
                memory_gib=self.default_memory_gib,
                cpus=self.default_cpus,
                spot=self.default_spot,
                max_lifetime_minutes=min(
                    self.max_lifetime_minutes, self.max_allowed_lifetime_minutes
                ),
                max_allowed_lifetime_minutes=self.max_allowed_lifetime_minutes,
            ),
            log_chunk_bytes=self.log_chunk_bytes,
            lifetime_unit_seconds=self.lifetime_unit_seconds,
            retry_seconds=self.stop_retry_seconds,
            no_inventory_message=NO_INVENTORY,
            max_active_instances=self.max_active_instances,
            max_hourly_spend=self.max_hourly_spend,
        )
        store = JobStore(Path(self.data_path) / "jobs.sqlite")
        # Objects only: nothing else starts here (no loop work in initialize_settings).
        self.service = JobService(store, backends, Path(root_dir), options, log=self.log)
        self.settings["awsjobs_service"] = self.service
        self.schedules = ScheduleService(
            self.service,
            ScheduleOptions(
                owner=user_name(),
                default_timezone=local_zone_name(),
                missed_run_grace_seconds=self.missed_run_grace_minutes * 60.0,
            ),
            log=self.log,
        )
        self.settings["awsjobs_schedules"] = self.schedules

    def initialize_handlers(self) -> None:
        self.handlers.extend([*schedule_handler_table(), *handler_table()])

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if self.service is None or self.schedules is None:
            return
        try:
            await self.schedules.start()  # starts the job service first
        except AWSJobsError as err:
            # E.g. a job store that cannot be opened: the server still starts, and every API
            # call answers with this message (and retries the start) until it is fixed.
            self.log.error("awsjobs: cannot start: %s", err)
        tune_garbage_collection()

    async def stop_extension(self) -> None:
        # Jobs are never stopped here: they outlive the server and are re-attached at start.
        if self.schedules is not None:
            await self.schedules.close()
        if self.service is not None:
            await self.service.close()
