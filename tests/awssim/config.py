"""The simulator's switches: one tree of small dataclasses, readable and writable as JSON.

Every duration is in seconds of wall-clock time, so tests can make AWS's minutes last a fraction
of a second. `SimConfig.update({...})` merges a partial JSON document (what
`POST /awssim/config` and `--config` take); lists (fault and capacity rules) are replaced whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LOST_ANSWER = "LostAnswer"


@dataclass
class ClockConfig:
    """How long AWS's own transitions take."""

    tick_seconds: float = 0.05  # how often the simulator advances on its own
    boot_seconds: float = 0.2  # pending → running (then the boot script runs)
    agent_register_seconds: float = 0.3  # running → SSM agent registered (Online)
    shutting_down_seconds: float = 0.2  # shutting-down → terminated, stopping → stopped
    halt_delay_seconds: float = 0.1  # `shutdown -h now` on the instance → shutting-down
    reboot_seconds: float = 0.2  # a reboot: down → running again
    spot_notice_seconds: float = 0.5  # interruption notice → shutting-down (AWS: 2 minutes)
    shutdown_minute_seconds: float = 60.0  # what one minute of `shutdown -h +N` lasts
    mount_seconds: float = 0.0  # a successful `mount` (EFS) on the worker takes this long
    # Seconds per second of SSM's TimeoutSeconds (delivery) and executionTimeout.
    ssm_timeout_scale: float = 1.0


@dataclass
class ConsistencyConfig:
    """Eventual consistency windows after a create call (0: consistent at once, like moto)."""

    instance_not_found_seconds: float = 0.0  # by id: InvalidInstanceID.NotFound
    instance_unlisted_seconds: float = 0.0  # missing from DescribeInstances without ids
    image_not_found_seconds: float = 0.0  # InvalidAMIID.NotFound, and unlisted
    invocation_not_found_seconds: float = 0.0  # GetCommandInvocation: InvocationDoesNotExist


@dataclass
class FaultRule:
    """Fail calls of `action` (or "*") with the AWS error `error`, or lose their answer.

    `error = "LostAnswer"`: the call is applied, then the connection is reset without an answer
    (after `delay_seconds`, so a client whose read timeout is shorter sees a timeout instead).
    `count` caps how many calls the rule hits (None: no cap); `probability` draws from the
    simulator's seeded RNG, so a run with the same seed and calls injects the same faults.
    """

    action: str
    error: str
    service: str = "*"
    count: int | None = None
    probability: float = 1.0
    status: int | None = None  # HTTP status; default from errors.DEFAULT_STATUS
    delay_seconds: float = 0.0


@dataclass
class CapacityRule:
    """RunInstances matching the globs fails with `error` (InsufficientInstanceCapacity,
    SpotMaxPriceTooLow, Unsupported, …)."""

    error: str
    instance_type: str = "*"
    zone: str = "*"
    market: str = "*"  # "spot", "on-demand" or "*"


@dataclass
class CapacityConfig:
    rules: list[CapacityRule] = field(default_factory=list)
    # Quota group (capacity.quota_group) → vCPUs that may run at once; a group not listed is
    # unlimited. Over the on-demand budget: VcpuLimitExceeded; over the spot one:
    # MaxSpotInstanceCountExceeded.
    on_demand_vcpus: dict[str, int] = field(default_factory=dict)
    spot_vcpus: dict[str, int] = field(default_factory=dict)
    # What an instant CreateFleet orders its pools by ("type@zone" or "type" → USD/hour); a
    # pool not listed comes after the priced ones, in the order of the request.
    prices: dict[str, float] = field(default_factory=dict)


@dataclass
class WorkerConfig:
    """The stand-in instance: runs the boot script and AWS-RunShellScript commands."""

    enabled: bool = True
    # The folder that stands for the EFS mount (the Jupyter server root): `mount` succeeds only
    # onto it. None: any mount target succeeds.
    efs_root: str | None = None
    mount_fails: bool = False  # every `mount` fails (the boot script writes mount-failed)
    # The `aws` shim halts the instance after the first file of a recursive upload.
    s3_upload_dies: bool = False
    sandbox_dir: str | None = None  # None: a temporary folder, removed at stop


@dataclass
class SimConfig:
    seed: int = 0
    clock: ClockConfig = field(default_factory=ClockConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    faults: list[FaultRule] = field(default_factory=list)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Merge a partial JSON document; unknown keys raise ValueError."""
        _merge(self, changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SimConfig:
        config = cls()
        config.update(data or {})
        return config


# Lists of rules are given as lists of JSON objects.
_RULE_LISTS: dict[str, type[FaultRule] | type[CapacityRule]] = {
    "faults": FaultRule,
    "rules": CapacityRule,
}


def _merge(target: object, changes: Mapping[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    for key, value in changes.items():
        if key not in names:
            raise ValueError(f"unknown setting {key!r} in {type(target).__name__}")
        current = getattr(target, key)
        if key in _RULE_LISTS:
            rule_type = _RULE_LISTS[key]
            setattr(target, key, [_rule(rule_type, item) for item in value])
        elif dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            _merge(current, value)
        else:
            setattr(target, key, value)


def _rule(rule_type: type[FaultRule] | type[CapacityRule], item: Any) -> Any:
    if isinstance(item, rule_type):
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"a {rule_type.__name__} must be a JSON object, got {item!r}")
    try:
        return rule_type(**item)
    except TypeError as error:
        raise ValueError(f"{rule_type.__name__}: {error}") from None
