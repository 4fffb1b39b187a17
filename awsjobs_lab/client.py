"""The Python API of awsjobs-lab: run and watch jobs from a notebook cell or a script.

It is a small REST client of the running Jupyter server (never of AWS directly), so every job it
starts shows up in the Jobs panel like one started from the menu::

    from awsjobs_lab.client import run_job

    job = run_job("analysis.ipynb", memory=16, cpu=4, spot=True, log_file="analysis.log")
    for text in job.log(follow=True):
        print(text, end="")
    job.state                     # 'succeeded'

Only the standard library (and `jupyter_core`, to find the runtime directory) is imported: no
tornado, no jupyter_server. Calls are synchronous.

Finding the server: `JUPYTER_SERVER_URL` (with `JUPYTER_TOKEN`) when set; otherwise the
`jpserver-*.json` files of the running servers in the Jupyter runtime directory, choosing the one
whose root directory contains the script (or the current directory), and that answers.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .schedule_client import (
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    run_schedule,
    update_schedule,
)

__all__ = [
    "AWSJobsAPIError",
    "AWSJobsClientError",
    "BackendError",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "JobNotFound",
    "JobWaitTimeout",
    "ServerInfo",
    "ServerNotFound",
    "connect",
    "create_schedule",
    "delete_schedule",
    "get_job",
    "get_schedule",
    "list_job_instances",
    "list_jobs",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "run_job",
    "run_schedule",
    "stop_instances",
    "stop_job",
    "update_schedule",
]

T = TypeVar("T")

API_PATH = "awsjobs/api/"
TERMINAL_STATES = frozenset({"succeeded", "failed", "stopped", "timed_out", "interrupted"})
DEFAULT_TIMEOUT = 30.0  # seconds for one HTTP request
RECONNECT_SECONDS = 60.0  # how long wait()/log(follow) keep retrying a server that went away
RECONNECT_PAUSE = 1.0

NO_SERVER_MESSAGE = (
    "No running Jupyter server with awsjobs-lab was found: start `jupyter lab`, "
    "or set JUPYTER_SERVER_URL and JUPYTER_TOKEN"
)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class AWSJobsClientError(Exception):
    """Base of every error this module raises on purpose."""


class ServerNotFound(AWSJobsClientError):
    """No running Jupyter server with awsjobs-lab could be found or reached."""


class JobWaitTimeout(AWSJobsClientError, TimeoutError):
    """`Job.wait` ran out of time. The job is NOT stopped; it keeps running."""

    def __init__(self, job_id: str, state: str, timeout: float) -> None:
        super().__init__(
            f"job {job_id} is still {state} after {timeout:g} s "
            f"(it keeps running; stop it with stop_job({job_id!r}))"
        )
        self.job_id = job_id
        self.state = state
        self.timeout = timeout


class AWSJobsAPIError(AWSJobsClientError):
    """The server refused or failed a request. `message` is the server's own message."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.reason = reason


class InvalidRequest(AWSJobsAPIError, ValueError):
    """400: the request was invalid (missing file, bad memory, unknown backend, ...)."""


class Forbidden(AWSJobsAPIError):
    """403: not allowed (e.g. an instance id that this tool did not launch)."""


class JobNotFound(AWSJobsAPIError, LookupError):
    """404: no such job (or no such endpoint: is awsjobs-lab enabled on that server?)."""


class Conflict(AWSJobsAPIError):
    """409: the request conflicts with the job's state."""


class BackendError(AWSJobsAPIError):
    """502: AWS or the operating system failed."""


_ERRORS_BY_STATUS: dict[int, type[AWSJobsAPIError]] = {
    400: InvalidRequest,
    403: Forbidden,
    404: JobNotFound,
    409: Conflict,
    502: BackendError,
}


def _api_error(status: int, body: bytes, not_found: str | None = None) -> AWSJobsAPIError:
    """The exception for an error answer. A body that is not the API's JSON (e.g. tornado's
    HTML page for a URL no route matches) gives a plain message, never HTML."""
    message = ""
    reason: str | None = None
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        reason = str(data["reason"]) if data.get("reason") else None
    if not message:
        if status == 404 and not_found:
            message = not_found
        else:
            message = reason or http.client.responses.get(status, "request failed")
    return _ERRORS_BY_STATUS.get(status, AWSJobsAPIError)(status, message, reason)


# --------------------------------------------------------------------------------------------
# The connection to one server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerInfo:
    """Where a Jupyter server answers. `url` includes its base_url; `root_dir` is absolute when
    known (from its jpserver file or JUPYTER_SERVER_ROOT)."""

    url: str
    token: str = ""
    root_dir: str | None = None

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/" + API_PATH


class Client:
    """A REST client of one Jupyter server's awsjobs-lab API. The module functions use one
    found by `connect()`; build one yourself to talk to a given server."""

    def __init__(self, server: ServerInfo, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.server.url!r}, root_dir={self.server.root_dir!r})"

    # -- HTTP ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        not_found: str | None = None,
    ) -> Any:
        """One JSON request to `<base_url>/awsjobs/api/<path>`. Returns the decoded body (None
        for an empty one); raises an `AWSJobsAPIError` subclass for an error answer."""
        url = self.server.api_url + path
        if query:
            params = {k: str(v) for k, v in query.items() if v is not None}
            if params:
                url += "?" + urllib.parse.urlencode(params)
        data = None
        headers = {"Accept": "application/json"}
        if self.server.token:
            headers["Authorization"] = f"token {self.server.token}"
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            data = b""
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _opener(url).open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise _api_error(err.code, err.read(), not_found) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ServerNotFound(
                f"The Jupyter server at {self.server.url} did not answer ({reason}). "
                "Is it still running?"
            ) from None
        if not raw:
            return None
        return json.loads(raw.decode("utf-8"))

    def ping(self) -> dict[str, Any]:
        """`GET config`: raises unless the server answers and has awsjobs-lab."""
        result = self.request("GET", "config")
        return result if isinstance(result, dict) else {}

    # -- paths ---------------------------------------------------------------------------

    def server_path(self, path: str | os.PathLike[str]) -> str:
        """`path` (relative to the current directory, or absolute) as a '/'-separated path
        relative to the server root. Raises `ValueError` if it is outside the root."""
        return _relative_to_root(path, self.server.root_dir)

    # -- jobs ----------------------------------------------------------------------------

    def run_job(
        self,
        script: str | os.PathLike[str],
        memory: float | None = None,
        cpu: int | None = None,
        spot: bool = False,
        log_file: str | os.PathLike[str] | None = None,
        backend: str | None = None,
        max_lifetime_minutes: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] | None = None,
        instance_type: str | None = None,
        on_interruption: str | None = None,
        max_attempts: int | None = None,
        gpus: int | None = None,
        gpu_memory_gib: float | None = None,
        gpu_model: str | None = None,
    ) -> Job:
        body = self.job_body(
            script,
            memory=memory,
            cpu=cpu,
            spot=spot,
            log_file=log_file,
            backend=backend,
            max_lifetime_minutes=max_lifetime_minutes,
            parameters=parameters,
            env=env,
            args=args,
            instance_type=instance_type,
            on_interruption=on_interruption,
            max_attempts=max_attempts,
            gpus=gpus,
            gpu_memory_gib=gpu_memory_gib,
            gpu_model=gpu_model,
        )
        try:
            return Job(self, self.request("POST", "jobs", body=body))
        except InvalidRequest as err:
            if self.server.root_dir is None and err.message.startswith(("path:", "log_path:")):
                err.message += (
                    " (paths are taken relative to the server root, which is unknown here: "
                    "set JUPYTER_SERVER_ROOT to give paths relative to the current directory)"
                )
                err.args = (f"{err.message} (HTTP {err.status})",)
            raise

    def job_body(
        self,
        script: str | os.PathLike[str],
        memory: float | None = None,
        cpu: int | None = None,
        spot: bool = False,
        log_file: str | os.PathLike[str] | None = None,
        backend: str | None = None,
        max_lifetime_minutes: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] | None = None,
        instance_type: str | None = None,
        on_interruption: str | None = None,
        max_attempts: int | None = None,
        gpus: int | None = None,
        gpu_memory_gib: float | None = None,
        gpu_model: str | None = None,
    ) -> dict[str, Any]:
        """The `POST jobs` body of `run_job`'s arguments (also a schedule's `job`)."""
        body: dict[str, Any] = {"path": self.server_path(script), "spot": bool(spot)}
        if memory is not None:
            body["memory_gib"] = memory
        if cpu is not None:
            body["cpus"] = cpu
        if log_file is not None:
            body["log_path"] = self.server_path(log_file)
        if backend is not None:
            body["backend"] = backend
        if max_lifetime_minutes is not None:
            body["max_lifetime_minutes"] = max_lifetime_minutes
        if parameters:
            body["parameters"] = dict(parameters)
        if env:
            body["env"] = {str(k): str(v) for k, v in env.items()}
        if args is not None and not isinstance(args, str):
            body["args"] = [str(a) for a in args]
        elif args is not None:
            raise TypeError("args: a list of strings (one per argument), not one string")
        if instance_type is not None:
            body["instance_type"] = instance_type
        if on_interruption is not None:
            body["on_interruption"] = on_interruption
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        gpu_fields = {"gpus": gpus, "gpu_memory_gib": gpu_memory_gib, "gpu_model": gpu_model}
        body.update({k: v for k, v in gpu_fields.items() if v is not None})
        return body

    def get_job(self, job_id: str) -> Job:
        return Job(self, self.request("GET", f"jobs/{_quote(job_id)}", not_found=_no_job(job_id)))

    def list_jobs(
        self, state: str | Iterable[str] | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs newest first, optionally only those in `state` (a state or several), at most
        `limit` of them (all when None)."""
        states = [state] if isinstance(state, str) else list(state or [])
        query: dict[str, Any] = {}
        if states:
            query["state"] = ",".join(s.strip() for s in states if s.strip())
        jobs: list[Job] = []
        cursor: str | None = None
        while True:
            if cursor:
                query["cursor"] = cursor
            if limit is not None:
                query["limit"] = limit - len(jobs)
            page = self.request("GET", "jobs", query=query)
            jobs.extend(Job(self, data) for data in page.get("jobs", []))
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(jobs) >= limit):
                return jobs[:limit] if limit is not None else jobs

    def stop_job(self, job_id: str) -> Job:
        return Job(
            self, self.request("POST", f"jobs/{_quote(job_id)}/stop", not_found=_no_job(job_id))
        )

    def read_log(self, job_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """One `GET jobs/{id}/log` answer: content, offset, next_offset, size, eof, complete."""
        result = self.request(
            "GET",
            f"jobs/{_quote(job_id)}/log",
            query={"offset": offset, "limit": limit},
            not_found=_no_job(job_id),
        )
        return result if isinstance(result, dict) else {}

    # -- instances -----------------------------------------------------------------------

    def list_job_instances(self) -> list[dict[str, Any]]:
        """This tool's running EC2 instances (only those it launched)."""
        result = self.request("GET", "instances")
        return list(result.get("instances", [])) if isinstance(result, dict) else []

    def stop_instances(self, instance_ids: Iterable[str]) -> list[str]:
        """Terminate these instances of this tool; returns the ids terminated. If any id is
        not one of ours the server refuses them all (`Forbidden`) and touches nothing."""
        ids = [instance_ids] if isinstance(instance_ids, str) else list(instance_ids)
        result = self.request("POST", "instances/stop", body={"instance_ids": ids})
        return list(result.get("terminated", [])) if isinstance(result, dict) else []


# --------------------------------------------------------------------------------------------
# A job
# --------------------------------------------------------------------------------------------


class Job:
    """A job as the server last described it. `data` holds every field of the server's Job
    JSON (see CONTRIBUTING.md); the common ones are properties. `refresh()` re-reads it."""

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self.client = client
        self.data: dict[str, Any] = dict(data)
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.state} {self.path!r} on {self.backend}>"

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __getattr__(self, name: str) -> Any:
        """Every other field of the server's Job JSON as an attribute (`job.memory_gib`,
        `job.cost_so_far`, `job.history`, ...)."""
        data = self.__dict__.get("data")
        if data is not None and name in data:
            return data[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def state(self) -> str:
        return str(self.data.get("state", ""))

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def path(self) -> str:
        return str(self.data.get("path", ""))

    @property
    def backend(self) -> str:
        return str(self.data.get("backend", ""))

    @property
    def log_path(self) -> str:
        return str(self.data.get("log_path", ""))

    @property
    def exit_code(self) -> int | None:
        value = self.data.get("exit_code")
        return int(value) if value is not None else None

    @property
    def error(self) -> str | None:
        value = self.data.get("error")
        return str(value) if value else None

    @property
    def instance_id(self) -> str | None:
        value = self.data.get("instance_id")
        return str(value) if value else None

    @property
    def instance_type(self) -> str | None:
        value = self.data.get("instance_type")
        return str(value) if value else None

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """The instances the job ran on, one per attempt (a spot job relaunched after an
        interruption has several): instance_id, instance_type, spot, availability_zone,
        started_at, ended_at, outcome, cost."""
        return [dict(a) for a in self.data.get("attempts") or []]

    def refresh(self) -> Job:
        """Re-read the job from the server; returns itself."""
        self.data = dict(self.client.get_job(self.id).data)
        return self

    def stop(self) -> Job:
        """Ask the server to stop the job (idempotent); returns itself, usually `stopping`.
        Use `wait()` to see it reach `stopped`."""
        self.data = dict(self.client.stop_job(self.id).data)
        return self

    def _retrying(self, call: Callable[[], T]) -> T:
        """`call`, retried while the server does not answer (e.g. it is being restarted: jobs
        survive that), for up to `RECONNECT_SECONDS`; then the `ServerNotFound` is raised."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                return call()
            except ServerNotFound:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(RECONNECT_PAUSE)

    def wait(self, timeout: float | None = None, poll: float = 2.0) -> str:
        """Block until the job has finished and return its final state. Raises
        `JobWaitTimeout` (a `TimeoutError`) after `timeout` seconds; the job keeps running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._retrying(self.refresh)
            if self.is_finished:
                return self.state
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobWaitTimeout(self.id, self.state, float(timeout or 0))
                time.sleep(min(poll, left))
            else:
                time.sleep(poll)

    def log(
        self, follow: bool = False, poll: float = 1.0, offset: int | None = None
    ) -> Iterator[str]:
        """Yield the log's new text, chunk by chunk, from where the last call stopped (or from
        `offset`). With `follow=True` keep polling until the job has finished and its log is
        complete (then `.state` is refreshed: it is the final state); otherwise stop at the
        current end of the log."""
        if offset is not None:
            self._log_offset = offset
        while True:
            page = self._retrying(partial(self.client.read_log, self.id, self._log_offset))
            content = str(page.get("content") or "")
            next_offset = int(page.get("next_offset", self._log_offset))
            self._log_offset = max(self._log_offset, next_offset)
            if content:
                yield content
            if page.get("complete"):
                if follow:
                    self._retrying(self.refresh)  # so `.state` is the final state now
                return
            if page.get("eof", True):
                if not follow:
                    return
                time.sleep(poll)

    def read_log(self) -> str:
        """The whole log as it is now (from the beginning)."""
        return "".join(self.log(offset=0))


# --------------------------------------------------------------------------------------------
# Finding the server
# --------------------------------------------------------------------------------------------


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


def _opener(url: str) -> urllib.request.OpenerDirector:
    """No HTTP proxy for a server on this machine (a proxy set for the internet would
    otherwise be asked for 127.0.0.1 too)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host in ("localhost", "::1") or host.startswith("127."):
        return _DIRECT
    return _DEFAULT


def _no_job(job_id: str) -> str:
    return f"no job {job_id!r}"


def _quote(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def _relative_to_root(path: str | os.PathLike[str], root: str | None) -> str:
    raw = os.fspath(path)
    if not raw:
        raise ValueError("empty path")
    expanded = os.path.expanduser(raw)
    if root is None:
        # The root is unknown (a server given by URL without JUPYTER_SERVER_ROOT): a relative
        # path is sent as given, taken by the server as relative to its root.
        if os.path.isabs(expanded):
            raise ValueError(
                f"{raw}: cannot place an absolute path under the server root, which is unknown; "
                "set JUPYTER_SERVER_ROOT, or give the path relative to the server root"
            )
        return Path(expanded).as_posix()
    absolute = os.path.abspath(expanded)
    for candidate, base in (
        (absolute, os.path.abspath(root)),
        (os.path.realpath(absolute), os.path.realpath(root)),
    ):
        if _is_within(candidate, base):
            rel = os.path.relpath(candidate, base)
            if rel == ".":
                break
            return Path(rel).as_posix()
    raise ValueError(f"{raw} ({absolute}) is outside the Jupyter server root {root}")


def _running_server_files(runtime_dir: str | None = None) -> list[dict[str, Any]]:
    """The parsed jpserver-*.json files whose process is alive, newest first."""
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    try:
        names = os.listdir(runtime_dir)
    except OSError:
        return []
    found: list[tuple[float, dict[str, Any]]] = []
    for name in names:
        if not (name.startswith("jpserver-") and name.endswith(".json")):
            continue
        file = os.path.join(runtime_dir, name)
        try:
            with open(file, encoding="utf-8") as f:
                info = json.load(f)
            mtime = os.path.getmtime(file)
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or not info.get("url"):
            continue
        if not _pid_alive(info.get("pid")):
            continue
        found.append((mtime, info))
    found.sort(key=lambda item: item[0], reverse=True)
    return [info for _, info in found]


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _same_url(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)

    def host(p: urllib.parse.SplitResult) -> str:
        name = (p.hostname or "").lower()
        return "127.0.0.1" if name in ("localhost", "127.0.0.1", "::1") else name

    return (
        host(pa) == host(pb) and pa.port == pb.port and pa.path.rstrip("/") == pb.path.rstrip("/")
    )


def connect(
    path: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    runtime_dir: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Client:
    """Find the Jupyter server to talk to, and check that it answers with awsjobs-lab.

    `url`/`token` (or `JUPYTER_SERVER_URL`/`JUPYTER_TOKEN`) name a server directly. Otherwise the
    running servers of `runtime_dir` (default: the Jupyter runtime directory) are tried, those
    whose root contains `path` (default: the current directory) first, deepest root first.
    Raises `ServerNotFound`, or `ValueError` when servers run but none has `path` under its root.
    """
    for found in _servers(path, url=url, token=token, runtime_dir=runtime_dir, timeout=timeout):
        return found
    raise ServerNotFound(NO_SERVER_MESSAGE)  # pragma: no cover - _servers raises first


def _servers(
    path: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    runtime_dir: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[Client]:
    """The answering servers, best first (see `connect`); raises `ServerNotFound` (or the
    `ValueError` for a path under no server root) if there is none."""
    url = url or os.environ.get("JUPYTER_SERVER_URL") or None
    if url:
        if token is None:
            token = os.environ.get("JUPYTER_TOKEN", "")
        root = os.environ.get("JUPYTER_SERVER_ROOT") or None
        if root is None:
            # The jpserver file of that same server, if any, knows its root.
            for info in _running_server_files(runtime_dir):
                if _same_url(str(info["url"]), url):
                    root = str(info.get("root_dir") or "") or None
                    token = token or str(info.get("token") or "")
                    break
        client = Client(ServerInfo(url, token or "", root), timeout)
        try:
            client.ping()
        except JobNotFound:
            raise ServerNotFound(
                f"The Jupyter server at {url} does not have awsjobs-lab enabled "
                "(GET awsjobs/api/config answered 404)"
            ) from None
        yield client
        return

    target = os.path.abspath(os.path.expanduser(os.fspath(path))) if path else os.getcwd()
    servers = _running_server_files(runtime_dir)
    containing: list[tuple[int, dict[str, Any]]] = []
    for info in servers:
        root = str(info.get("root_dir") or "")
        if not root:
            continue
        if _is_within(target, os.path.abspath(root)) or _is_within(
            os.path.realpath(target), os.path.realpath(root)
        ):
            containing.append((len(os.path.abspath(root)), info))
    containing.sort(key=lambda item: item[0], reverse=True)
    ordered = [info for _, info in containing]
    if path is None:
        # No file involved (list, stop, logs): any server will do, the cwd's first.
        ordered += [info for info in servers if info not in ordered]

    answered = False
    for info in ordered:
        client = Client(
            ServerInfo(
                str(info["url"]), str(info.get("token") or ""), info.get("root_dir") or None
            ),
            timeout,
        )
        try:
            client.ping()
        except (AWSJobsAPIError, ServerNotFound):
            continue
        answered = True
        yield client
    if answered:
        return

    if path is not None and servers and not ordered:
        roots = [str(info.get("root_dir")) for info in servers]
        raise ValueError(
            f"{os.fspath(path)} ({target}) is not under the root of any running Jupyter server "
            f"(roots: {', '.join(roots)}); move it under a server root or start `jupyter lab` "
            "in a directory that contains it"
        )
    raise ServerNotFound(NO_SERVER_MESSAGE)


def _on_the_jobs_server(job_id: str, call: Callable[[Client], T]) -> T:
    """`call` on the server that knows `job_id`: with several servers running (and no
    JUPYTER_SERVER_URL), each answering one is asked in turn until one has the job."""
    not_found: JobNotFound | None = None
    for found in _servers():
        try:
            return call(found)
        except JobNotFound as err:
            not_found = not_found or err
    assert not_found is not None
    raise not_found


# --------------------------------------------------------------------------------------------
# The module-level API (mirrors R's awsjobs)
# --------------------------------------------------------------------------------------------


def run_job(
    script: str | os.PathLike[str],
    memory: float | None = None,
    cpu: int | None = None,
    spot: bool = False,
    log_file: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    max_lifetime_minutes: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] | None = None,
    instance_type: str | None = None,
    on_interruption: str | None = None,
    max_attempts: int | None = None,
    gpus: int | None = None,
    gpu_memory_gib: float | None = None,
    gpu_model: str | None = None,
) -> Job:
    """Run `script` (a notebook, .py, .R, .Rmd, .qmd or .sh file; relative to the current
    directory or absolute, under the server root) as a job, and return it at once.

    `memory` (GiB) and `cpu` (vCPUs) size the instance on EC2; left out, the server's defaults
    apply. `log_file` defaults to `<script dir>/<stem>.<job id>.log`. `parameters` are papermill
    parameters for notebooks, or the declared `params` of an R Markdown or Quarto report (its
    rendered file is `job.output_path`); `args` the command-line arguments of a .py, .R or .sh
    script (`run_job("train.py", args=["--epochs", "10"])`); `env` environment variables.
    For a spot job, `on_interruption` (`"retry"`, the default: spot again, the last attempt on
    on-demand; `"on_demand"`; `"fail"`) and `max_attempts` (1 to 10, default 3) say what
    happens when AWS reclaims its instance. On EC2, `gpus` (at least that many),
    `gpu_memory_gib` (per GPU) and `gpu_model` (`"T4"`, `"A10G"`, `"L4"`, any case) choose a
    GPU instance type.
    """
    return connect(script).run_job(
        script,
        memory=memory,
        cpu=cpu,
        spot=spot,
        log_file=log_file,
        backend=backend,
        max_lifetime_minutes=max_lifetime_minutes,
        parameters=parameters,
        env=env,
        args=args,
        instance_type=instance_type,
        on_interruption=on_interruption,
        max_attempts=max_attempts,
        gpus=gpus,
        gpu_memory_gib=gpu_memory_gib,
        gpu_model=gpu_model,
    )


def get_job(job_id: str) -> Job:
    return _on_the_jobs_server(job_id, lambda c: c.get_job(job_id))


def stop_job(job_id: str) -> Job:
    """Stop a job (idempotent). Returns it, usually `stopping`; `.wait()` for `stopped`."""
    return _on_the_jobs_server(job_id, lambda c: c.stop_job(job_id))


def list_jobs(state: str | Iterable[str] | None = None, limit: int | None = None) -> list[Job]:
    """Jobs, newest first; `state` filters (`"running"`, or `["pending", "running"]`)."""
    return connect().list_jobs(state=state, limit=limit)


def list_job_instances() -> list[dict[str, Any]]:
    """This tool's running EC2 instances (like R's `list_r_job_instances()`)."""
    return connect().list_job_instances()


def stop_instances(instance_ids: Iterable[str]) -> list[str]:
    """Terminate instances launched by this tool. A foreign id is refused (`Forbidden`) and
    nothing is touched."""
    return connect().stop_instances(instance_ids)
