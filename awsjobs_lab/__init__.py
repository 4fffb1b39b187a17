"""awsjobs-lab: run a notebook or script as a job (locally or on EC2), watched from JupyterLab."""

from __future__ import annotations

from typing import Any

try:
    from ._version import __version__
except ImportError:  # a source checkout that was never built
    __version__ = "dev"

__all__ = ["__version__"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "awsjobs-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import AWSJobs

    return [{"module": "awsjobs_lab", "app": AWSJobs}]
