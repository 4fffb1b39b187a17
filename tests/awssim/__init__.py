"""A simulated AWS for tests, benchmarks and browser tests: moto in server mode, made to
behave like the real EC2 and SSM (eventual consistency, throttling and lost answers, capacity
and quotas, a late SSM agent, a worker that really runs the commands, spot interruptions,
reboots). See README.md in this folder.

    from tests.awssim import SimulatedAWS
    with SimulatedAWS({"clock": {"boot_seconds": 0.2}}) as aws:
        ...  # point clients at aws.endpoint_url

or, as its own process: `python -m tests.awssim --port 0 --config '{...}'` (prints its URL).

The names are loaded lazily, so importing the package costs nothing until they are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SimConfig", "SimulatedAWS", "control"]


def __getattr__(name: str) -> Any:
    if name == "SimConfig":
        from .config import SimConfig

        return SimConfig
    if name in ("SimulatedAWS", "control"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
