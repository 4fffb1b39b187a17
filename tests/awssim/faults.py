"""Which calls fail: the fault rules of the configuration, drawn from a seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import LOST_ANSWER, FaultRule


@dataclass(frozen=True)
class Fault:
    code: str
    status: int | None
    delay_seconds: float

    @property
    def lost_answer(self) -> bool:
        return self.code == LOST_ANSWER


class FaultPlan:
    """Counts what each rule has injected so `count` caps it; reset with the simulator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.used: dict[int, int] = {}  # id(rule) → injections so far

    def draw(self, rules: list[FaultRule], service: str, action: str) -> Fault | None:
        """The first matching rule that fires for this call, if any."""
        for rule in rules:
            if rule.service not in ("*", service) or rule.action not in ("*", action):
                continue
            if rule.count is not None and self.used.get(id(rule), 0) >= rule.count:
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            self.used[id(rule)] = self.used.get(id(rule), 0) + 1
            return Fault(rule.error, rule.status, rule.delay_seconds)
        return None
