"""What happened during a run: calls per action, faults per kind, instances and their cost.

A chaos run reads this (in-process `SimulatedAWS.record`, or `GET /awssim/state`) to report
how many faults of each kind it injected and how many instance-seconds were spent.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def utc_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class InstanceLife:
    """One instance ever launched. Billing runs from launch until stopped or terminated."""

    instance_id: str
    instance_type: str
    market: str
    zone: str
    launched_at: str
    tags: dict[str, str]
    terminated_at: str | None = None
    state_reason: str | None = None
    billed_seconds: float = 0.0
    billing_since: float | None = None  # monotonic; None while not billed

    def stop_billing(self) -> None:
        if self.billing_since is not None:
            self.billed_seconds += time.monotonic() - self.billing_since
            self.billing_since = None

    def seconds(self) -> float:
        running = 0.0 if self.billing_since is None else time.monotonic() - self.billing_since
        return self.billed_seconds + running

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "instance_type": self.instance_type,
            "market": self.market,
            "zone": self.zone,
            "tags": self.tags,
            "launched_at": self.launched_at,
            "terminated_at": self.terminated_at,
            "state_reason": self.state_reason,
            "instance_seconds": round(self.seconds(), 3),
        }


@dataclass
class Record:
    calls: Counter[str] = field(default_factory=Counter)  # "ec2:RunInstances" → n
    faults: Counter[str] = field(default_factory=Counter)  # kind (an error code) → n
    faults_by_action: Counter[str] = field(default_factory=Counter)  # "ec2:RunInstances:kind"
    events: Counter[str] = field(default_factory=Counter)  # e.g. "spot-interruption"
    instances: dict[str, InstanceLife] = field(default_factory=dict)
    fleets: list[dict[str, Any]] = field(default_factory=list)  # instant CreateFleet requests

    def call(self, service: str, action: str) -> None:
        self.calls[f"{service}:{action}"] += 1

    def fault(self, service: str, action: str, kind: str) -> None:
        self.faults[kind] += 1
        self.faults_by_action[f"{service}:{action}:{kind}"] += 1

    def launched(self, life: InstanceLife) -> None:
        life.billing_since = time.monotonic()
        self.instances[life.instance_id] = life

    def instance_seconds(self) -> float:
        return sum(life.seconds() for life in self.instances.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "faults": dict(self.faults),
            "faults_by_action": dict(self.faults_by_action),
            "events": dict(self.events),
            "instances": [life.to_json() for life in self.instances.values()],
            "instance_seconds": round(self.instance_seconds(), 3),
            "fleets": list(self.fleets),
        }
