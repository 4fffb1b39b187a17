"""The extension app: entry points, configuration, backends loaded lazily and safely."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import awsjobs_lab
from awsjobs_lab import app as app_module
from awsjobs_lab.app import AWSJobs
from awsjobs_lab.backends import warm as warm_module


def test_entry_points() -> None:
    assert awsjobs_lab._jupyter_server_extension_points() == [
        {"module": "awsjobs_lab", "app": AWSJobs}
    ]
    assert awsjobs_lab._jupyter_labextension_paths() == [
        {"src": "labextension", "dest": "awsjobs-lab"}
    ]
    assert AWSJobs.name == "awsjobs_lab"


async def test_configured_objects(service: Any, jp_root_dir: Path, tmp_path: Path) -> None:
    local = service.backends["local"]
    assert local.stop_grace_seconds == 3.0  # from c.LocalBackend
    assert local.root_dir == str(await asyncio.to_thread(jp_root_dir.resolve))
    assert service.store.path == tmp_path / "awsjobs-data" / "jobs.sqlite"
    assert service.store.path.exists()
    assert list(service.backends) == ["local", "ec2"]


async def test_the_warm_runner_is_spawned_when_the_extension_is_linked(service: Any) -> None:
    # Spawned at link (config known, the server's web app not built yet), adopted at start.
    runner = service.backends["local"]._warm
    assert runner is not None and await runner.wait_started()
    assert isinstance(runner._proc, warm_module._AdoptedProcess)


EVENTS: list[str] = []


class _Recorded:
    """A stand-in backend that records when it is made and when it is prepared."""

    def __init__(self, parent: Any = None) -> None:
        self.root_dir = ""
        self.lifetime_unit_seconds = 60.0
        EVENTS.append(f"load {type(self).__name__}")

    def prepare(self) -> None:
        EVENTS.append(f"prepare {type(self).__name__}")


class First(_Recorded):
    pass


class Second(_Recorded):
    pass


def test_each_backend_is_prepared_as_soon_as_it_is_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The local backend's warm runner must not wait for the EC2 backend's imports.
    monkeypatch.setitem(app_module.BACKEND_CLASSES, "first", f"{__name__}.First")
    monkeypatch.setitem(app_module.BACKEND_CLASSES, "second", f"{__name__}.Second")
    app = AWSJobs(backends=["first", "second"])
    monkeypatch.setattr(app, "serverapp", SimpleNamespace(root_dir=str(tmp_path)))
    EVENTS.clear()
    backends = app._prepared_backends()
    assert list(backends) == ["first", "second"]
    assert EVENTS == ["load First", "prepare First", "load Second", "prepare Second"]
    assert backends["first"].root_dir == str(tmp_path.resolve())


async def test_ec2_job_while_ec2_is_not_configured(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "x.py").write_text("pass\n")
    code, reply = await api("POST", "jobs", body={"path": "x.py", "backend": "ec2"})
    assert code == 400
    assert reply["reason"] == "not_configured" and "EC2" in reply["message"]


class TestBackendSelection:
    @pytest.fixture
    def awsjobs_config(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        broken = "awsjobs_lab.backends.does_not_exist.Backend"
        monkeypatch.setitem(app_module.BACKEND_CLASSES, "broken", broken)
        return {
            "backends": ["local", "unknown", "broken"],
            "default_backend": "ec2",
            "default_cpus": 2,
            "max_lifetime_minutes": 30,
        }

    async def test_bad_backends_are_skipped(self, api: Any, jp_root_dir: Path) -> None:
        code, config = await api("GET", "config")
        assert code == 200
        assert [b["id"] for b in config["backends"]] == ["local"]
        assert config["default_backend"] == "local"  # ec2 is not enabled: fall back
        assert config["defaults"]["cpus"] == 2
        assert config["defaults"]["max_lifetime_minutes"] == 30
        assert config["aws_configured"] is False
        (jp_root_dir / "x.py").write_text("pass\n")
        code, reply = await api("POST", "jobs", body={"path": "x.py", "backend": "ec2"})
        assert code == 400 and "backend:" in reply["message"]
        code, job = await api("POST", "jobs", body={"path": "x.py"})
        assert code == 201 and job["backend"] == "local" and job["cpus"] == 2
        code, reply = await api("GET", "instances")
        assert code == 400 and "not enabled" in reply["message"]
