"""The patches on moto that route every call through the simulator (one simulator a process).

- `BaseResponse.call_action`, moto's single dispatch point for every service;
- `ssm.models.Command._get_instance_ids_from_targets`: moto sends a command without `Targets`
  to every instance in the region; on AWS it goes only to the named instances.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import BaseResponse
from moto.ssm import models as ssm_models

from .simulator import Simulator

_saved: dict[str, Any] = {}


def install(simulator: Simulator) -> None:
    if _saved:
        raise RuntimeError("a simulated AWS is already running in this process")
    original_call = BaseResponse.call_action
    original_targets = ssm_models.Command._get_instance_ids_from_targets
    _saved.update(call=original_call, targets=original_targets)

    def call_action(self: BaseResponse) -> Any:
        return simulator.handle(self, lambda: original_call(self))

    def targets(self: Any) -> list[str]:
        return original_targets(self) if self.targets else []

    BaseResponse.call_action = call_action  # type: ignore[method-assign]
    ssm_models.Command._get_instance_ids_from_targets = targets  # type: ignore[method-assign]


def uninstall() -> None:
    if not _saved:
        return
    BaseResponse.call_action = _saved.pop("call")  # type: ignore[method-assign]
    ssm_models.Command._get_instance_ids_from_targets = _saved.pop("targets")  # type: ignore[method-assign]
