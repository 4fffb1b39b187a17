"""The simulator's state that the per-service hooks share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from moto.core.responses import BaseResponse

from .agent import Agent
from .config import SimConfig
from .consistency import Visibility
from .errors import Answer
from .machines import Fleet
from .record import Record

# A hook gets moto's response object (the parsed request) and moto's own handler; it answers,
# or returns PASS to let moto answer (outside the simulator's lock).
PASS = None
Hook = Callable[[BaseResponse, Callable[[], Answer]], Answer | None]


@dataclass
class World:
    config: SimConfig
    record: Record
    fleet: Fleet
    agent: Agent
    visibility: Visibility
    # RunInstances ClientToken → (reservation id, fingerprint of the rest of the request)
    client_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
