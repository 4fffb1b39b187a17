"""GPUs: what a job asks for (`GpuNeed`) and what an instance type has (`GpuInfo`, from
DescribeInstanceTypes' `GpuInfo`), and whether the one meets the other.

Shared by the request (validation, the job record) and the instance choice (`aws/select.py`);
it knows nothing of HTTP or of jobs' states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_GPUS = 16  # p5.48xlarge and friends have 8; room for larger types to come


@dataclass(frozen=True)
class GpuNeed:
    """At least `count` GPUs, each with at least `memory_gib` of memory, of `model` if given
    (matched case-insensitively against `GpuInfo.Gpus[].Name`: "T4", "A10G", "L4")."""

    count: int = 0
    memory_gib: float = 0.0
    model: str | None = None

    @property
    def wanted(self) -> bool:
        return self.count > 0

    def describe(self) -> str:
        """'1 GPU (A10G) with 24 GiB each', for error messages."""
        text = f"{self.count} GPU{'s' if self.count != 1 else ''}"
        if self.model:
            text += f" ({self.model})"
        if self.memory_gib:
            text += f" with {self.memory_gib:g} GiB each"
        return text


NO_GPU = GpuNeed()


@dataclass(frozen=True)
class GpuInfo:
    """An instance type's GPUs: how many, which model, memory per GPU (MiB)."""

    count: int
    model: str
    memory_mib: int

    @property
    def memory_gib(self) -> float:
        return round(self.memory_mib / 1024.0, 3)

    def facts(self) -> dict[str, Any]:
        """The GPU facts of a type as `GET instance-types` serves them."""
        return {"gpus": self.count, "gpu_model": self.model, "gpu_memory_gib": self.memory_gib}


NO_GPU_FACTS: dict[str, Any] = {"gpus": 0, "gpu_model": None, "gpu_memory_gib": 0.0}


def parse_gpu_info(row: dict[str, Any]) -> GpuInfo | None:
    """The GPUs of a DescribeInstanceTypes row; None without `GpuInfo`. A type lists one
    entry per model (every current type has one); with several, the smallest memory counts."""
    entries = (row.get("GpuInfo") or {}).get("Gpus") or []
    if not entries:
        return None
    count = sum(int(e.get("Count", 0)) for e in entries)
    memory = min(int((e.get("MemoryInfo") or {}).get("SizeInMiB", 0)) for e in entries)
    model = "/".join(dict.fromkeys(str(e.get("Name", "")) for e in entries))
    return GpuInfo(count=count, model=model, memory_mib=memory)


def meets(info: GpuInfo | None, need: GpuNeed) -> bool:
    """Whether a type with these GPUs (None: none) meets the need (no need: always)."""
    if not need.wanted:
        return True
    if info is None or info.count < need.count:
        return False
    if info.memory_mib < need.memory_gib * 1024:
        return False
    models = {m.lower() for m in info.model.split("/")}
    return need.model is None or need.model.lower() in models


def gpu_facts(info: GpuInfo | None) -> dict[str, Any]:
    return info.facts() if info is not None else dict(NO_GPU_FACTS)
