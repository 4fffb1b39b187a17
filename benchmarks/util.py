"""Small shared pieces: percentiles, a keep-alive HTTP client, processes we own and must end.

Everything here talks to 127.0.0.1 only and every loop is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
LOCALHOST = "127.0.0.1"

# Every process a benchmark starts, directly or through a server (job processes run in their own
# sessions, so killing a server's process group does not reach them), carries this variable with
# the run's id; at the end anything still carrying it is ended by its pid.
RUN_MARKER = "AWSJOBS_BENCH_RUN"


def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


T = TypeVar("T")


def median_item(items: Sequence[T], key: Callable[[T], Any]) -> T:
    """The item whose `key` is the median (the lower middle one of an even count): a whole
    pass or run, so its other figures can be reported beside the median."""
    return sorted(items, key=key)[(len(items) - 1) // 2]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> float:
    return seconds * 1000.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


class HTTPError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass
class Response:
    status: int
    body: bytes
    seconds: float  # from the first byte sent to the last byte read

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    """A blocking keep-alive HTTP/1.1 client for one server: the least overhead between the clock
    and the socket, so latencies measure the server, not the client."""

    def __init__(self, port: int, token: str, timeout: float = 60.0) -> None:
        self.port = port
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None, ok: bool = True) -> Response:
        headers = {"Authorization": f"token {self.token}"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                start = time.perf_counter()
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter() - start
                break
            except (ConnectionError, http.client.HTTPException, TimeoutError):
                self.close()
                if attempt == 2:
                    raise
        if ok and resp.status >= 400:
            raise HTTPError(resp.status, payload.decode(errors="replace"))
        return Response(resp.status, payload, elapsed)

    def get(self, path: str, ok: bool = True) -> Response:
        return self.request("GET", path, ok=ok)

    def post(self, path: str, body: Any = None, ok: bool = True) -> Response:
        return self.request("POST", path, body if body is not None else {}, ok=ok)


def probe_reset(client: Client, debug: bool = False) -> None:
    """Clear the in-server probe's figures and (re)start its tick (`benchmarks/probe.py`);
    `debug`: asyncio's slow-callback report too (off otherwise)."""
    client.post("/bench-probe/reset" + ("?debug=1" if debug else ""))


def probe_stop(client: Client) -> None:
    """Stop the probe's tick (it wakes the server's loop 200 times a second)."""
    client.post("/bench-probe/stop")


def probe_stats(client: Client, since: float = 0.0, detail: bool = False) -> dict[str, Any]:
    """The probe's figures; AWS calls and monitor cycles from `since` (time.time()) on;
    `detail`: every tick's lag, CPU and wait for a CPU, and the objects the collector tracks."""
    path = f"/bench-probe/stats?since={since}" + ("&detail=1" if detail else "")
    stats: dict[str, Any] = client.get(path).json()
    return stats


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    """Processes started by this run. `stop_all` ends each by its id (group first, then the marked
    stragglers) and is safe to call more than once, from `finally`, atexit or a signal handler."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._procs: list[subprocess.Popen[bytes]] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env[RUN_MARKER] = self.run_id
        env.pop("JUPYTER_TOKEN", None)
        if extra:
            env.update(extra)
        return env

    def start(
        self, argv: Sequence[str], cwd: Path, env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: we end the whole group by its id
            )
        finally:
            out.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace)
        # Whatever the group left behind (a kernel that ignored SIGTERM).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
        self.kill_marked()

    def kill_marked(self) -> list[int]:
        """End every process whose environment carries this run's marker (job processes that a
        server started in their own sessions), by pid."""
        killed = []
        needle = f"{RUN_MARKER}={self.run_id}".encode()
        me = os.getpid()
        for pid in marked_pids(needle):
            if pid == me:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed


def marked_pids(needle: bytes) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            yield int(entry.name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def io_counters(pid: int) -> dict[str, int]:
    """`/proc/<pid>/io`: rchar (bytes read by read-like calls) and read_bytes (from storage)."""
    counters = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        counters[key.strip()] = int(value)
    return counters


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%h %cI %s"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip()
    except OSError:
        return "unknown"
