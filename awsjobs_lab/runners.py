"""File type → the argv that runs it. One table; every command is an argv list, never a shell
string.

A job runs with its working directory set to the script's folder, so commands name the file by
its base name. A base name that starts with `-` gets `./` in front so no tool reads it as an option.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from .models import Job


def safe_name(name: str) -> str:
    """A base name as a command-line argument that no tool can read as an option."""
    return f"./{name}" if name.startswith("-") else name


def _papermill_path(name: str) -> str:
    # papermill formats its paths with the parameters (`path.format(**params)`): double the
    # braces so a file named `a{b}.ipynb` is taken literally.
    return safe_name(name).replace("{", "{{").replace("}", "}}")


def notebook_output_name(name: str, job_id: str) -> str:
    """`<stem>.<job id>.ipynb`: the executed copy of a notebook, beside the input."""
    return f"{PurePosixPath(name).stem}.{job_id}.ipynb"


def _papermill(job: Job, name: str, python: str) -> list[str]:
    output = PurePosixPath(job.output_path).name if job.output_path else None
    if output is None:
        output = notebook_output_name(name, job.id)
    argv = [python, "-m", "papermill", "--log-output", "--no-progress-bar"]
    argv += [_papermill_path(name), _papermill_path(output)]
    if job.parameters:
        # JSON is YAML: one argument carries every parameter with its type intact.
        argv += ["-y", json.dumps(job.parameters, sort_keys=True)]
    return argv


# The R Markdown render. Its arguments: the document, the file to write (`output_path`'s name,
# in the document's first format; empty: rmarkdown's own name) and, with parameters, their
# JSON: arrays of scalars become vectors, objects named lists, null NULL. Intermediate files go
# to a temporary folder, so two jobs of one report never share them.
RENDER_RMD = (
    "a <- commandArgs(trailingOnly = TRUE); "
    "o <- if (length(a) > 1 && nzchar(a[2])) a[2] else NULL; "
    "p <- if (length(a) > 2) jsonlite::fromJSON(a[3], simplifyVector = TRUE, "
    "simplifyDataFrame = FALSE, simplifyMatrix = FALSE) else NULL; "
    "rmarkdown::render(a[1], output_file = o, params = p, intermediates_dir = tempdir())"
)


def _output_name(job: Job) -> str:
    """The rendered file's name ("" for a job accepted before reports had one)."""
    return safe_name(PurePosixPath(job.output_path).name) if job.output_path else ""


def _rmarkdown(job: Job, name: str, python: str) -> list[str]:
    argv = ["Rscript", "-e", RENDER_RMD, safe_name(name), _output_name(job)]
    if job.parameters:
        argv.append(json.dumps(job.parameters, sort_keys=True))
    return argv


def _quarto(job: Job, name: str, python: str) -> list[str]:
    argv = ["quarto", "render", safe_name(name)]
    if job.output_path:
        argv += ["--output", _output_name(job)]
    if job.output_format:
        argv += ["--to", job.output_format]
    for key, value in sorted(job.parameters.items()):
        # Quarto reads a value as YAML, and JSON is YAML (a JSON text has no raw line break).
        argv += ["-P", f"{key}:{json.dumps(value)}"]
    return argv


def _script(*program: str) -> Callable[[Job, str, str], list[str]]:
    """A script run by `program` (none: the job's python), with the job's `args` after it."""

    def argv(job: Job, name: str, python: str) -> list[str]:
        return [*(program or (python,)), safe_name(name), *job.args]

    return argv


@dataclass(frozen=True)
class Runner:
    extension: str  # canonical spelling, as shown to users
    label: str
    argv: Callable[[Job, str, str], list[str]]  # (job, safe base name, python) → argv
    takes_parameters: bool = False
    takes_args: bool = False
    is_report: bool = False  # rendered to a file (`reports.py` reads its header)


_RUNNERS: tuple[Runner, ...] = (
    Runner(".ipynb", "Jupyter notebook (papermill)", _papermill, takes_parameters=True),
    Runner(".py", "Python script", _script(), takes_args=True),
    Runner(".R", "R script", _script("Rscript"), takes_args=True),
    Runner(".Rmd", "R Markdown", _rmarkdown, takes_parameters=True, is_report=True),
    Runner(".qmd", "Quarto document", _quarto, takes_parameters=True, is_report=True),
    Runner(".sh", "Shell script", _script("bash"), takes_args=True),
)

# Suffix as written → runner. R's own tools accept the lower-case spellings too.
_BY_SUFFIX: dict[str, Runner] = {r.extension: r for r in _RUNNERS}
_BY_SUFFIX[".r"] = _BY_SUFFIX[".R"]
_BY_SUFFIX[".rmd"] = _BY_SUFFIX[".Rmd"]


def supported_extensions() -> list[str]:
    """The canonical extensions, in display order."""
    return [r.extension for r in _RUNNERS]


def runner_for(path: str) -> Runner | None:
    """The runner of a file, by its suffix as written (`.r`/`.rmd` accepted), or None."""
    return _BY_SUFFIX.get(PurePosixPath(path).suffix)


def build_command(job: Job, python: str) -> list[str]:
    """The argv that runs `job` from its script's folder. `python` is the interpreter to use
    (the server's own locally, `python3` on an EC2 worker)."""
    name = PurePosixPath(job.path).name
    runner = runner_for(name)
    if runner is None:
        raise ValueError(f"no runner for {name!r}")
    return runner.argv(job, name, python)
