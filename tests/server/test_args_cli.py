"""`args` and report parameters through the Python API and `awsjobs run ... -- ARG...`: what
reaches the REST body (no server: the client's `request` is captured)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab import cli
from awsjobs_lab import client as api

# The bodies of `POST jobs`, captured without a server (the GPU fields' tests use it too).
from tests.client.test_gpu_passthrough import sent as sent


@pytest.fixture(autouse=True)
def scripts(tmp_path: Path) -> None:
    """The files run here, in the folder `sent` makes current (the server root)."""
    for name in ("train.py", "report.Rmd"):
        (tmp_path / name).write_text("\n")


def test_run_job_passes_args(sent: list[dict[str, Any]]) -> None:
    job = api.run_job("train.py", args=("--epochs", "10", "a b"))
    assert sent[0]["args"] == ["--epochs", "10", "a b"]
    assert job.data["args"] == ["--epochs", "10", "a b"]
    api.run_job("train.py")
    assert "args" not in sent[1]  # the server's default: none
    api.run_job("train.py", args=[])
    assert sent[2]["args"] == []


def test_run_job_refuses_one_string(sent: list[dict[str, Any]]) -> None:
    with pytest.raises(TypeError, match="a list of strings"):
        api.run_job("train.py", args="--epochs 10")
    assert sent == []


@pytest.mark.parametrize(
    ("argv", "args", "memory"),
    [
        (
            ["run", "train.py", "--", "--epochs", "10", "--follow"],
            ["--epochs", "10", "--follow"],
            None,
        ),
        (["run", "train.py", "--memory", "8", "--", "--epochs", "10"], ["--epochs", "10"], 8.0),
        (["run", "train.py", "--", "--", "x"], ["--", "x"], None),
        (["run", "train.py", "--", ""], [""], None),
        (["run", "train.py", "a", "b"], ["a", "b"], None),
    ],
)
def test_cli_double_dash(
    sent: list[dict[str, Any]], argv: list[str], args: list[str], memory: float | None
) -> None:
    assert cli.main(argv, out=io.StringIO(), err=io.StringIO()) == 0
    assert sent[0]["args"] == args
    assert sent[0].get("memory_gib") == memory


def test_cli_without_args_sends_none(sent: list[dict[str, Any]]) -> None:
    assert cli.main(["run", "train.py", "--memory", "2"], out=io.StringIO(), err=io.StringIO()) == 0
    assert "args" not in sent[0]


def test_cli_report_parameters(sent: list[dict[str, Any]]) -> None:
    argv = ["run", "report.Rmd", "--param", "n=7", "--param", "who=Ada"]
    assert cli.main(argv, out=io.StringIO(), err=io.StringIO()) == 0
    assert sent[0]["parameters"] == {"n": 7, "who": "Ada"}


def test_status_shows_args_and_output(sent: list[dict[str, Any]]) -> None:
    job = api.run_job("train.py", args=["--name", "run 1"])
    job.data["output_path"] = "r.j1.html"
    out = io.StringIO()
    cli._describe_job(job, out)
    assert "args:          --name 'run 1'\n" in out.getvalue()
    assert "output:        r.j1.html\n" in out.getvalue()
