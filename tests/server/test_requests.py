"""requests: every field of a launch request validated, every message naming its field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.models import JobState
from awsjobs_lab.requests import LaunchDefaults, parse_launch_request

DEFAULTS = LaunchDefaults(max_allowed_lifetime_minutes=600)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for name in ["run.py", "sub/nb.ipynb", "x.R", "y.rmd", "z.sh", "notes.txt", "sub/a b.py"]:
        (root / name).write_text("pass\n")
    (root / "folder.py").mkdir()
    (tmp_path / "outside.py").write_text("pass\n")
    os.symlink(tmp_path / "outside.py", root / "escape.py")
    os.symlink(root / "run.py", root / "link.py")
    return root


def parse(root: Path, **body: Any) -> Any:
    return parse_launch_request(body, root_dir=root, backends=["local", "ec2"], defaults=DEFAULTS)


def test_defaults(root: Path) -> None:
    job = parse(root, path="run.py")
    assert job.state is JobState.PENDING
    assert (job.backend, job.memory_gib, job.cpus, job.spot) == ("local", 4.0, 1, False)
    assert job.max_lifetime_minutes == 240
    assert job.log_path == f"run.{job.id}.log"
    assert job.output_path is None
    assert job.history[0].state is JobState.PENDING
    assert len(job.id) == 16


def test_full_request(root: Path) -> None:
    job = parse(
        root,
        path="sub/nb.ipynb",
        backend="ec2",
        memory_gib=0.5,
        cpus=8,
        spot=True,
        max_lifetime_minutes=600,
        log_path="sub/my.log",
        env={"A_1": "x", "_B": ""},
        parameters={"n": 1, "s": "t", "l": [1, {"a": None}]},
        instance_type="m7i.large",
    )
    assert (job.path, job.backend, job.memory_gib, job.cpus, job.spot) == (
        "sub/nb.ipynb",
        "ec2",
        0.5,
        8,
        True,
    )
    assert job.log_path == "sub/my.log"
    assert job.output_path == f"sub/nb.{job.id}.ipynb"
    assert job.instance_type == job.requested_instance_type == "m7i.large"
    assert job.env == {"A_1": "x", "_B": ""}


def test_paths_are_normalised_and_symlinks_inside_root_resolved(root: Path) -> None:
    assert parse(root, path="sub/../run.py").path == "run.py"
    assert parse(root, path="./sub/a b.py").path == "sub/a b.py"
    assert parse(root, path="link.py").path == "run.py"
    assert parse(root, path="x.R").path == "x.R"
    assert parse(root, path="y.rmd").path == "y.rmd"


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "path: required"),
    ({"path": ""}, "path:"),
    ({"path": 3}, "path:"),
    ({"path": None}, "path:"),
    ({"path": "/etc/passwd.py"}, "path: must be relative"),
    ({"path": "../outside.py"}, "path: '../outside.py' is outside"),
    ({"path": "sub/../../outside.py"}, "path:"),
    ({"path": "escape.py"}, "path: 'escape.py' is outside"),
    ({"path": "nul\x00.py"}, "path: must not contain a NUL"),
    ({"path": "missing.py"}, "path: 'missing.py' does not exist"),
    ({"path": "folder.py"}, "path: 'folder.py' is a directory"),
    ({"path": "notes.txt"}, "path: cannot run '.txt' files"),
    ({"path": "sub"}, "path: cannot run"),
    ({"path": "run.py", "backend": "k8s"}, "backend: 'k8s' is not an enabled backend"),
    ({"path": "run.py", "backend": 1}, "backend:"),
    ({"path": "run.py", "memory_gib": 0}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": -1}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": 24577}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": 1e308}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": float("nan")}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": "4"}, "memory_gib:"),
    ({"path": "run.py", "memory_gib": True}, "memory_gib:"),
    ({"path": "run.py", "cpus": True}, "cpus:"),
    ({"path": "run.py", "cpus": 0}, "cpus:"),
    ({"path": "run.py", "cpus": 449}, "cpus:"),
    ({"path": "run.py", "cpus": 1.5}, "cpus:"),
    ({"path": "run.py", "cpus": 2.0}, "cpus:"),
    ({"path": "run.py", "spot": "yes"}, "spot:"),
    ({"path": "run.py", "spot": 1}, "spot:"),
    ({"path": "run.py", "max_lifetime_minutes": 0}, "max_lifetime_minutes:"),
    ({"path": "run.py", "max_lifetime_minutes": 601}, "max_lifetime_minutes:"),
    ({"path": "run.py", "max_lifetime_minutes": False}, "max_lifetime_minutes:"),
    ({"path": "run.py", "max_lifetime_minutes": 10.5}, "max_lifetime_minutes:"),
    ({"path": "run.py", "log_path": "/tmp/x.log"}, "log_path: must be relative"),
    ({"path": "run.py", "log_path": "../x.log"}, "log_path:"),
    ({"path": "run.py", "log_path": "nowhere/x.log"}, "log_path: the folder"),
    ({"path": "run.py", "log_path": "sub"}, "log_path: 'sub' is a directory"),
    ({"path": "run.py", "log_path": "run.py"}, "log_path: must not be the file"),
    ({"path": "run.py", "log_path": 5}, "log_path:"),
    ({"path": "run.py", "env": ["A"]}, "env:"),
    ({"path": "run.py", "env": {"1A": "x"}}, "env: '1A'"),
    ({"path": "run.py", "env": {"A-B": "x"}}, "env: 'A-B'"),
    ({"path": "run.py", "env": {"A=B": "x"}}, "env:"),
    ({"path": "run.py", "env": {"A": 1}}, "env: the value of A"),
    ({"path": "run.py", "env": {"A": "\x00"}}, "env:"),
    ({"path": "run.py", "parameters": {"n": 1}}, "parameters: only notebooks"),
    ({"path": "sub/nb.ipynb", "parameters": [1]}, "parameters:"),
    ({"path": "sub/nb.ipynb", "parameters": {"not valid": 1}}, "parameters: 'not valid'"),
    ({"path": "sub/nb.ipynb", "parameters": {"big": "x" * 70000}}, "parameters: at most 64 KiB"),
    ({"path": "run.py", "env": {f"V{i}": "x" * 1000 for i in range(70)}}, "env: at most 64 KiB"),
    ({"path": "run.py", "instance_type": "M7I.LARGE"}, "instance_type:"),
    ({"path": "run.py", "instance_type": "m7i"}, "instance_type:"),
    ({"path": "run.py", "instance_type": "m7i.large; rm"}, "instance_type:"),
    ({"path": "run.py", "instance_type": 7}, "instance_type:"),
    ({"path": "run.py", "extra": 1, "more": 2}, "unknown field(s): extra, more"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_requests(root: Path, body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(root, **body)
    assert str(info.value).startswith(message) or message in str(info.value)


@pytest.mark.parametrize("body", [[], "x", 1, None, True])
def test_body_must_be_an_object(root: Path, body: Any) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_launch_request(body, root_dir=root, backends=["local"], defaults=DEFAULTS)
