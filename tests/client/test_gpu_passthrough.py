"""The GPU fields (issue 12) through the Python API and the `awsjobs run` command: what reaches
the REST body (no server: the client's `request` is captured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab import cli
from awsjobs_lab import client as api


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The bodies of `POST jobs`, answered with a job that echoes them."""
    bodies: list[dict[str, Any]] = []
    (tmp_path / "train.ipynb").write_text("{}")
    server = api.Client(api.ServerInfo("http://127.0.0.1:9/", root_dir=str(tmp_path)))

    def request(method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        bodies.append(body)
        return {"id": "j1", "state": "pending", "backend": "ec2", "log_path": "x.log", **body}

    monkeypatch.setattr(server, "request", request)
    monkeypatch.setattr(api, "connect", lambda *a, **k: server)
    monkeypatch.chdir(tmp_path)
    return bodies


def test_run_job_passes_the_gpu_fields(sent: list[dict[str, Any]]) -> None:
    api.run_job("train.ipynb", gpus=1, gpu_memory_gib=24, gpu_model="A10G")
    assert (sent[0]["gpus"], sent[0]["gpu_memory_gib"], sent[0]["gpu_model"]) == (1, 24, "A10G")
    api.run_job("train.ipynb")
    assert not {"gpus", "gpu_memory_gib", "gpu_model"} & set(sent[1])  # the server's defaults


def test_cli_run_passes_the_gpu_fields(sent: list[dict[str, Any]]) -> None:
    argv = ["run", "train.ipynb", "--gpus", "1", "--gpu-memory", "24", "--gpu-model", "A10G"]
    assert cli.main(argv) == 0
    assert (sent[0]["gpus"], sent[0]["gpu_memory_gib"], sent[0]["gpu_model"]) == (1, 24.0, "A10G")


def test_status_shows_the_gpus() -> None:
    assert cli._gpus_line({"gpus": 0}) is None
    assert cli._gpus_line({"gpus": 2}) == "2"
    line = cli._gpus_line({"gpus": 1, "gpu_model": "A10G", "gpu_memory_gib": 22.0})
    assert line == "1 (A10G, 22 GiB each)"
