"""runners: one argv per file type, never a shell string, hostile names stay file names."""

from __future__ import annotations

import json
import sys

import pytest

from awsjobs_lab.runners import RENDER_RMD, build_command, runner_for, supported_extensions
from tests.server.helpers import make_job

PY = "/opt/python"


def test_supported_extensions() -> None:
    assert supported_extensions() == [".ipynb", ".py", ".R", ".Rmd", ".qmd", ".sh"]


@pytest.mark.parametrize(
    ("path", "argv"),
    [
        ("a/b/run.py", [PY, "run.py"]),
        ("x.R", ["Rscript", "x.R"]),
        ("x.r", ["Rscript", "x.r"]),
        # A job without its rendered file's name (accepted before reports had one): "".
        ("doc.Rmd", ["Rscript", "-e", RENDER_RMD, "doc.Rmd", ""]),
        ("doc.rmd", ["Rscript", "-e", RENDER_RMD, "doc.rmd", ""]),
        ("report.qmd", ["quarto", "render", "report.qmd"]),
        ("dir/job.sh", ["bash", "job.sh"]),
    ],
)
def test_argv_per_type(path: str, argv: list[str]) -> None:
    assert build_command(make_job(path), PY) == argv


def test_notebook_argv_with_parameters() -> None:
    job = make_job("nb/An.ipynb", id="0123456789abcdef", parameters={"n": 3, "name": "x y"})
    job.output_path = "nb/An.0123456789abcdef.ipynb"
    argv = build_command(job, PY)
    assert argv[:7] == [
        PY,
        "-m",
        "papermill",
        "--log-output",
        "--no-progress-bar",
        "An.ipynb",
        "An.0123456789abcdef.ipynb",
    ]
    assert argv[7] == "-y"
    assert json.loads(argv[8]) == {"n": 3, "name": "x y"}
    assert len(argv) == 9


def test_notebook_argv_without_parameters_and_output_default() -> None:
    job = make_job("An.ipynb", id="0123456789abcdef")
    assert build_command(job, PY)[-2:] == ["An.ipynb", "An.0123456789abcdef.ipynb"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a;rm -rf ~.py", "a;rm -rf ~.py"),
        ("-rf.py", "./-rf.py"),
        ("--help.py", "./--help.py"),
        ("with space.py", "with space.py"),
        ("quo'te\"s.py", "quo'te\"s.py"),
        ("$(whoami)`id`.py", "$(whoami)`id`.py"),
        ("ünï cödé ☃.py", "ünï cödé ☃.py"),
    ],
)
def test_hostile_names_are_single_arguments(name: str, expected: str) -> None:
    argv = build_command(make_job(f"dir/{name}"), PY)
    assert argv == [PY, expected]
    for tool_name, tool in [(".sh", "bash"), (".qmd", "quarto")]:
        other = name[:-3] + tool_name
        assert build_command(make_job(other), PY)[-1] == (
            f"./{other}" if other.startswith("-") else other
        ), tool


def test_hostile_notebook_names() -> None:
    job = make_job("-x{0}.ipynb", id="0123456789abcdef")
    argv = build_command(job, PY)
    # `./` against option parsing; doubled braces against papermill's path.format(**params).
    assert argv[5:7] == ["./-x{{0}}.ipynb", "./-x{{0}}.0123456789abcdef.ipynb"]


def test_no_runner_for_other_files() -> None:
    assert runner_for("notes.txt") is None
    assert runner_for("Makefile") is None
    assert runner_for("x.PY") is None
    with pytest.raises(ValueError, match="no runner"):
        build_command(make_job("notes.txt"), sys.executable)
