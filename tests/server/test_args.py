"""Script arguments (`args`): validated at request time, refused for notebooks and reports,
and received verbatim by .py, .R and .sh scripts on the local backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.errors import InvalidRequest
from awsjobs_lab.requests import MAX_ARGS, MAX_ARGS_BYTES, LaunchDefaults, parse_launch_request
from awsjobs_lab.runners import build_command
from tests.server.helpers import assert_error, parse_run_py
from tests.server.test_api import finished

PY = "/opt/python"

# Spaces, quotes, expansions and options: each must arrive as one argument, unchanged.
HOSTILE = [
    "--epochs",
    "10",
    "with space",
    'it\'s "quoted"',
    "$(touch pwned)",
    "`touch pwned`",
    "${HOME}",
    "*",
    "a\nb",
    "",
    "-",
    "ünï ☃",
    "; rm -rf ~",
]


def test_args_are_kept(tmp_path: Path) -> None:
    job = parse_run_py(tmp_path, args=["--epochs", "10"])
    assert job.args == ["--epochs", "10"]
    assert job.to_dict()["args"] == ["--epochs", "10"]
    assert build_command(job, PY) == [PY, "run.py", "--epochs", "10"]
    assert parse_run_py(tmp_path).args == [] and parse_run_py(tmp_path, args=None).args == []


@pytest.mark.parametrize(
    ("path", "program"), [("x.R", ["Rscript", "x.R"]), ("-x.sh", ["bash", "./-x.sh"])]
)
def test_args_after_the_script(tmp_path: Path, path: str, program: list[str]) -> None:
    (tmp_path / path).write_text("\n")
    job = parse_launch_request(
        {"path": path, "args": HOSTILE},
        root_dir=tmp_path,
        backends=["local"],
        defaults=LaunchDefaults(),
    )
    assert build_command(job, PY) == [*program, *HOSTILE]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--epochs 10", "args: must be a list of strings"),
        ([1, 2], "args: must be a list of strings"),
        ({"a": "b"}, "args: must be a list of strings"),
        (["a\x00b"], "args: an argument must not contain a NUL character"),
        (["\ud800"], "args: an argument must be valid Unicode text"),
        (["x"] * (MAX_ARGS + 1), f"args: at most {MAX_ARGS} arguments"),
        (["x" * MAX_ARGS_BYTES], f"args: at most {MAX_ARGS_BYTES // 1024} KiB in all"),
    ],
)
def test_bad_args(tmp_path: Path, args: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_run_py(tmp_path, args=args)
    assert str(err.value).startswith(message)


def test_args_at_the_limits(tmp_path: Path) -> None:
    assert len(parse_run_py(tmp_path, args=["x"] * MAX_ARGS).args) == MAX_ARGS
    # Each argument counts its bytes and its terminating NUL.
    assert parse_run_py(tmp_path, args=["é" * (MAX_ARGS_BYTES // 2 - 1)]).args


@pytest.mark.parametrize(("name", "text"), [("n.ipynb", "{}"), ("r.Rmd", "# R\n"), ("q.qmd", "")])
def test_args_refused_for_notebooks_and_reports(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(
        InvalidRequest, match="give a notebook or a report its values in parameters"
    ):
        parse_launch_request(
            {"path": name, "args": ["--x"]},
            root_dir=tmp_path,
            backends=["local"],
            defaults=LaunchDefaults(),
        )


def test_parameters_refused_for_scripts(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="give a script its command-line arguments in args"):
        parse_run_py(tmp_path, parameters={"n": 1})


# -- received for real -----------------------------------------------------------------------

SCRIPTS = {
    "show.py": "import json, sys\nprint(json.dumps(sys.argv[1:]))\n",
    "show.R": "cat(jsonlite::toJSON(commandArgs(trailingOnly = TRUE)), '\\n', sep = '')\n",
    "show.sh": (
        'printf "["; sep=""\n'
        'for a in "$@"; do printf "%s%s" "$sep" "$(printf "%s" "$a" | python3 -c '
        '\'import json,sys; print(json.dumps(sys.stdin.read()), end="")\')"; sep=,; done\n'
        'echo "]"\n'
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_scripts_receive_args_verbatim(api: Any, jp_root_dir: Path, name: str) -> None:
    (jp_root_dir / name).write_text(SCRIPTS[name])
    code, job = await api("POST", "jobs", body={"path": name, "args": HOSTILE})
    assert code == 201, job
    assert job["args"] == HOSTILE
    done = await finished(api, job["id"])
    log = (jp_root_dir / done["log_path"]).read_text()
    assert done["state"] == "succeeded", log
    assert json.loads(log) == HOSTILE
    assert not (jp_root_dir / "pwned").exists()


async def test_args_on_a_notebook_over_http(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "n.ipynb").write_text("{}")
    code, reply = await api("POST", "jobs", body={"path": "n.ipynb", "args": ["1"]})
    assert_error(code, reply, 400, "args:", "parameters")
