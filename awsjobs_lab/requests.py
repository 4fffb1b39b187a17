"""Validation of a launch request (the body of `POST /awsjobs/api/jobs`) into a pending Job.

Everything a user sends is checked here, before anything is stored or run; every error is an
`InvalidRequest` (HTTP 400) whose message starts with the field it is about.
"""

from __future__ import annotations

import json
import keyword
import math
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import InvalidRequest
from .gpus import MAX_GPUS, GpuNeed
from .models import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_ON_INTERRUPTION,
    MAX_ATTEMPTS_LIMIT,
    ON_INTERRUPTION,
    Job,
    JobState,
    Transition,
    new_job_id,
    now,
)
from .patterns import ENV_NAME, GPU_MODEL, INSTANCE_TYPE, PARAMETER_NAME, REPORT_PARAMETER_NAME
from .reports import ReportError, ReportInfo, describe_report, rendered_name
from .runners import Runner, notebook_output_name, runner_for, supported_extensions

MAX_MEMORY_GIB = 24576  # u-24tb1.112xlarge, the largest EC2 instance: 24 TiB, 448 vCPUs
MAX_CPUS = 448
MAX_PARAMETERS_BYTES = 64 * 1024
MAX_ARGS = 256
MAX_ARGS_BYTES = 64 * 1024
MAX_ENV_BYTES = 64 * 1024
MAX_PATH_BYTES = 4095  # Linux's PATH_MAX, less its NUL
MAX_NAME_BYTES = 255  # one file or folder name (NAME_MAX)

FIELDS = frozenset(
    {
        "path",
        "backend",
        "memory_gib",
        "cpus",
        "spot",
        "max_lifetime_minutes",
        "log_path",
        "env",
        "parameters",
        "args",
        "instance_type",
        "on_interruption",
        "max_attempts",
        "gpus",
        "gpu_memory_gib",
        "gpu_model",
    }
)


@dataclass(frozen=True)
class LaunchDefaults:
    """What a request gets for the fields it leaves out (from `c.AWSJobs.*`)."""

    backend: str = "local"
    memory_gib: float = 4.0
    cpus: int = 1
    spot: bool = False
    max_lifetime_minutes: int = 240
    max_allowed_lifetime_minutes: int = 10080


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # An int is finite (and may be too large for float: no math.isfinite on it).
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def check_memory_gib(value: Any) -> float:
    if not _is_number(value) or not 0 < value <= MAX_MEMORY_GIB:
        raise InvalidRequest(
            f"memory_gib: must be a number of GiB above 0 and at most {MAX_MEMORY_GIB}"
        )
    return float(value)


def check_cpus(value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_CPUS:
        raise InvalidRequest(f"cpus: must be a whole number from 1 to {MAX_CPUS}")
    return int(value)


def check_instance_type(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not INSTANCE_TYPE.match(value)):
        raise InvalidRequest("instance_type: must look like an EC2 instance type, e.g. m7i.large")
    return value


def check_on_interruption(value: Any) -> str:
    if value not in ON_INTERRUPTION:
        raise InvalidRequest(
            f"on_interruption: must be one of {', '.join(repr(v) for v in ON_INTERRUPTION)}"
        )
    return str(value)


def check_max_attempts(value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_ATTEMPTS_LIMIT:
        raise InvalidRequest(f"max_attempts: must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}")
    return int(value)


def check_gpus(count: Any, memory_gib: Any, model: Any) -> GpuNeed:
    """The GPU fields of a request (or a preview's query), each checked."""
    if not _is_int(count) or not 0 <= count <= MAX_GPUS:
        raise InvalidRequest(f"gpus: must be a whole number from 0 to {MAX_GPUS}")
    if not _is_number(memory_gib) or memory_gib < 0:
        raise InvalidRequest("gpu_memory_gib: must be a number of GiB, 0 or more")
    if model == "":
        model = None
    if model is not None and (not isinstance(model, str) or not GPU_MODEL.match(model)):
        raise InvalidRequest("gpu_model: must be a GPU name of letters, digits and '-', e.g. A10G")
    return GpuNeed(int(count), float(memory_gib), model)


def _is_unicode(text: str) -> bool:
    """Whether `text` can be encoded (JSON may carry lone surrogates, which cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_path_text(value: Any, field: str) -> str:
    """A path as sent: a non-empty string of valid Unicode that the OS can take."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field}: must be a non-empty string (a path relative to the root)")
    if "\x00" in value:
        raise InvalidRequest(f"{field}: must not contain a NUL character")
    if not _is_unicode(value):  # a lone surrogate ("\ud800" in JSON): no file can have it
        raise InvalidRequest(f"{field}: must be valid Unicode text (no lone surrogate)")
    encoded = value.encode("utf-8")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_PATH_BYTES} bytes long")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise InvalidRequest(f"{field}: a name in it is longer than {MAX_NAME_BYTES} bytes")
    return value


def resolve_inside(root: Path, value: Any, field: str) -> Path:
    """`value`, a path relative to `root`, resolved (symlinks too) and checked to stay inside
    `root` (itself resolved)."""
    value = _check_path_text(value, field)
    relative = PurePosixPath(value)
    if relative.is_absolute():
        raise InvalidRequest(
            f"{field}: must be relative to the server root, not an absolute path: {value!r}"
        )
    try:
        full = (root / relative).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, a name too long
        raise InvalidRequest(f"{field}: cannot be resolved: {err}") from None
    if not full.is_relative_to(root):
        raise InvalidRequest(f"{field}: {value!r} is outside the server root")
    return full


def inside_root_unchanged(root: Path, value: str, field: str) -> Path:
    """At launch, a path accepted earlier (stored resolved, relative to `root`) resolved again;
    `InvalidRequest` if it now leads elsewhere: a link swapped in since it was checked."""
    full = resolve_inside(root, value, field)
    if full != root / value:
        raise InvalidRequest(
            f"{field}: {value!r} was replaced by a link after the job was accepted; not run"
        )
    return full


def _file_type(path: Path, value: str, field: str) -> int | None:
    """The `st_mode` of `path` (following links, already checked), None if it does not
    exist; `InvalidRequest` if it cannot be looked at (a folder we may not read)."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise InvalidRequest(f"{field}: cannot read {value!r}: {err.strerror or err}") from None


def _check_script(script: Path, value: str) -> None:
    mode = _file_type(script, value, "path")
    if mode is None:
        raise InvalidRequest(f"path: {value!r} does not exist")
    if stat.S_ISDIR(mode):
        raise InvalidRequest(f"path: {value!r} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise InvalidRequest(f"path: {value!r} is not a regular file")
    if not os.access(script, os.R_OK):
        raise InvalidRequest(f"path: {value!r} cannot be read (permission denied)")


def _check_log(log_file: Path, value: str, root: Path, script: Path) -> None:
    mode = _file_type(log_file, value, "log_path")
    if log_file == root or (mode is not None and stat.S_ISDIR(mode)):
        raise InvalidRequest(f"log_path: {value!r} is a directory, not a file")
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO would block whoever opens it
        raise InvalidRequest(f"log_path: {value!r} is not a regular file")
    if log_file == script:
        raise InvalidRequest("log_path: must not be the file being run")
    folder_mode = _file_type(log_file.parent, value, "log_path")
    if folder_mode is None or not stat.S_ISDIR(folder_mode):
        raise InvalidRequest(f"log_path: the folder of {value!r} does not exist")
    if not os.access(log_file.parent, os.W_OK | os.X_OK):
        raise InvalidRequest(f"log_path: the folder of {value!r} is not writable")


def _check_parameter_names(parameters: dict[str, Any]) -> None:
    for name in parameters:
        if not PARAMETER_NAME.match(name):
            raise InvalidRequest(f"parameters: {name!r} is not a valid Python identifier")
        if keyword.iskeyword(name):  # `class = 1` in the injected cell is a syntax error
            raise InvalidRequest(f"parameters: {name!r} is a Python keyword, not a name")


def _check_report_parameter_names(
    parameters: dict[str, Any], report: ReportInfo, file_name: str
) -> None:
    """Every name must be one the report declares (its renderer refuses others, late)."""
    for name in parameters:
        if not REPORT_PARAMETER_NAME.match(name):
            raise InvalidRequest(f"parameters: {name!r} is not a parameter name")
        if name not in report.declared_params:
            declared = ", ".join(report.declared_params)
            raise InvalidRequest(
                f"parameters: {name!r} is not declared by {file_name}; declared: {declared}"
                if declared
                else f"parameters: {file_name} declares no params (its YAML header has none)"
            )


def check_parameters(
    value: Any, runner: Runner, report: ReportInfo | None, file_name: str
) -> dict[str, Any]:
    """The `parameters` of a notebook (papermill's) or a report (its header's `params`)."""
    parameters = {} if value is None else value
    if not isinstance(parameters, dict):
        raise InvalidRequest("parameters: must be an object of name: value")
    if parameters and not runner.takes_parameters:
        raise InvalidRequest(
            "parameters: only notebooks and reports (.ipynb, .Rmd, .qmd) take parameters; "
            "give a script its command-line arguments in args"
        )
    if report is not None:
        _check_report_parameter_names(parameters, report, file_name)
    else:
        _check_parameter_names(parameters)
    if len(json.dumps(parameters)) > MAX_PARAMETERS_BYTES:
        # They travel as one command-line argument, which Linux caps at 128 KiB.
        raise InvalidRequest(f"parameters: at most {MAX_PARAMETERS_BYTES // 1024} KiB of JSON")
    return dict(parameters)


def check_args(value: Any, runner: Runner) -> list[str]:
    """A script's command-line arguments, passed after it exactly as given."""
    args = [] if value is None else value
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InvalidRequest("args: must be a list of strings")
    if args and not runner.takes_args:
        raise InvalidRequest(
            f"args: a {runner.label} takes no command-line arguments; "
            "give a notebook or a report its values in parameters"
        )
    if len(args) > MAX_ARGS:
        raise InvalidRequest(f"args: at most {MAX_ARGS} arguments")
    if any("\x00" in a for a in args):
        raise InvalidRequest("args: an argument must not contain a NUL character")
    if not all(_is_unicode(a) for a in args):
        raise InvalidRequest("args: an argument must be valid Unicode text")
    if sum(len(a.encode("utf-8")) + 1 for a in args) > MAX_ARGS_BYTES:
        raise InvalidRequest(f"args: at most {MAX_ARGS_BYTES // 1024} KiB in all")
    return list(args)


def read_report(script: Path, value: str) -> ReportInfo:
    """What the report at `script` declares (its params, its format), or `InvalidRequest`."""
    try:
        return describe_report(script)
    except ReportError as err:
        raise InvalidRequest(f"path: {value!r} cannot be read as a report: {err}") from None
    except OSError as err:
        raise InvalidRequest(f"path: cannot read {value!r}: {err.strerror or err}") from None


def parse_launch_request(
    body: Any, *, root_dir: Path, backends: Collection[str], defaults: LaunchDefaults
) -> Job:
    """Validate `body` (decoded JSON) into a new pending Job, or raise `InvalidRequest`.

    `root_dir` is the server root (resolved here), `backends` the ids of enabled backends."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}"
        )
    root = root_dir.resolve()
    job_id = new_job_id()

    if "path" not in body:
        raise InvalidRequest("path: required (the file to run, relative to the server root)")
    script = resolve_inside(root, body["path"], "path")
    runner = runner_for(script.name)
    if runner is None:
        raise InvalidRequest(
            f"path: cannot run {script.suffix or 'a file without an extension'!r} files; "
            f"supported: {', '.join(supported_extensions())}"
        )
    _check_script(script, body["path"])
    path = script.relative_to(root).as_posix()
    folder = PurePosixPath(path).parent

    backend = body.get("backend", defaults.backend)
    if not isinstance(backend, str) or backend not in backends:
        raise InvalidRequest(
            f"backend: {backend!r} is not an enabled backend; enabled: {', '.join(backends)}"
        )

    memory_gib = check_memory_gib(body.get("memory_gib", defaults.memory_gib))
    cpus = check_cpus(body.get("cpus", defaults.cpus))

    spot = body.get("spot", defaults.spot)
    if not isinstance(spot, bool):
        raise InvalidRequest("spot: must be true or false")

    most = defaults.max_allowed_lifetime_minutes
    lifetime = body.get("max_lifetime_minutes", min(defaults.max_lifetime_minutes, most))
    if not _is_int(lifetime) or not 1 <= lifetime <= most:
        raise InvalidRequest(f"max_lifetime_minutes: must be a whole number from 1 to {most}")

    log_value = body.get("log_path")
    if log_value is None:
        log_path = (folder / f"{script.stem}.{job_id}.log").as_posix()
    else:
        log_file = resolve_inside(root, log_value, "log_path")
        _check_log(log_file, log_value, root, script)
        log_path = log_file.relative_to(root).as_posix()

    env = body.get("env", {})
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise InvalidRequest("env: must be an object of NAME: value strings")
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise InvalidRequest(
                f"env: {name!r} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if not isinstance(value, str):
            raise InvalidRequest(f"env: the value of {name} must be a string")
        if "\x00" in value:
            raise InvalidRequest(f"env: the value of {name} must not contain a NUL character")
        if not _is_unicode(value):
            raise InvalidRequest(f"env: the value of {name} must be valid Unicode text")

    if sum(len(k) + len(v) + 2 for k, v in env.items()) > MAX_ENV_BYTES:
        raise InvalidRequest(f"env: at most {MAX_ENV_BYTES // 1024} KiB of names and values")

    report = read_report(script, body["path"]) if runner.is_report else None
    parameters = check_parameters(body.get("parameters"), runner, report, script.name)
    args = check_args(body.get("args"), runner)

    instance_type = check_instance_type(body.get("instance_type"))
    # Kept on every job (Re-run sends them back), used only by spot jobs: an on-demand
    # instance is never reclaimed, so a job without spot has one attempt whatever they say.
    on_interruption = check_on_interruption(body.get("on_interruption", DEFAULT_ON_INTERRUPTION))
    max_attempts = check_max_attempts(body.get("max_attempts", DEFAULT_MAX_ATTEMPTS))
    gpus = check_gpus(body.get("gpus", 0), body.get("gpu_memory_gib", 0), body.get("gpu_model"))

    output_path = None
    if report is not None:
        output_path = (folder / rendered_name(script.name, job_id, report.extension)).as_posix()
    elif runner.takes_parameters:
        output_path = (folder / notebook_output_name(script.name, job_id)).as_posix()

    at = now()
    return Job(
        id=job_id,
        path=path,
        backend=backend,
        state=JobState.PENDING,
        created_at=at,
        updated_at=at,
        memory_gib=memory_gib,
        cpus=cpus,
        spot=spot,
        max_lifetime_minutes=lifetime,
        log_path=log_path,
        env=dict(env),
        parameters=parameters,
        args=args,
        instance_type=instance_type,
        requested_instance_type=instance_type,
        output_path=output_path,
        output_format=report.output_format if report else None,
        history=[Transition(JobState.PENDING, at, "created")],
        on_interruption=on_interruption,
        max_attempts=max_attempts,
        gpus=gpus.count,
        gpu_memory_gib=gpus.memory_gib,
        gpu_model=gpus.model,
    )
