"""The EC2 backend: `EC2Backend` (backend.py) on its settings and checks (settings.py), the
instance choice (choice.py) and the instance inventory (inventory.py)."""

from __future__ import annotations

from .backend import EC2Backend
from .settings import EC2Settings

__all__ = ["EC2Backend", "EC2Settings"]
