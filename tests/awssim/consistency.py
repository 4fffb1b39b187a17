"""Eventual consistency: ids that exist in moto but that AWS would not show yet.

On AWS a RunInstances answer can name an instance that DescribeInstances, TerminateInstances
and CreateTags still answer `InvalidInstanceID.NotFound` for, and that filtered listings omit
for a while longer; the same holds for a new AMI. This keeps, per id, until when it is hidden.
"""

from __future__ import annotations

import time

from .config import ConsistencyConfig


class Visibility:
    def __init__(self) -> None:
        self.not_found_until: dict[str, float] = {}  # id → monotonic deadline
        self.unlisted_until: dict[str, float] = {}

    def created_instance(self, instance_id: str, config: ConsistencyConfig) -> None:
        now = time.monotonic()
        self.not_found_until[instance_id] = now + config.instance_not_found_seconds
        self.unlisted_until[instance_id] = now + config.instance_unlisted_seconds

    def created_image(self, image_id: str, config: ConsistencyConfig) -> None:
        deadline = time.monotonic() + config.image_not_found_seconds
        self.not_found_until[image_id] = deadline
        self.unlisted_until[image_id] = deadline

    def created_invocation(self, command_id: str, config: ConsistencyConfig) -> None:
        deadline = time.monotonic() + config.invocation_not_found_seconds
        self.not_found_until[command_id] = deadline

    def settle(self, ids: list[str]) -> None:
        """End these ids' windows now: tests that must not race the clock under load."""
        for i in ids:
            self.not_found_until.pop(i, None)
            self.unlisted_until.pop(i, None)

    def not_found(self, ids: list[str]) -> list[str]:
        """Those of `ids` that a call naming them must not find yet."""
        now = time.monotonic()
        return [i for i in ids if self.not_found_until.get(i, 0.0) > now]

    def unlisted(self) -> set[str]:
        """Every id that listings (calls without ids) must omit right now."""
        now = time.monotonic()
        return {i for i, until in self.unlisted_until.items() if until > now}
