"""The warm runner: the fork server every local job starts from, papermill already imported.

`python -m papermill` spends most of a short notebook job importing (nbformat → jsonschema →
a parser built at import time). The runner pays that once: it imports papermill's CLI, then
waits for requests on its stdin (one JSON object a line) and answers on its stdout.

Other local jobs start from it too: its child execs the wrapper program (`wrapper.py`) in
place of papermill. Once its imports are done, the runner drops to the jobs' CPU priority
(niceness and SCHED_IDLE, `priority.py`), so its forks and every child start there: a job
never runs a moment at the server's priority, not even its interpreter's start, and waking the
runner never takes a CPU from the server's event loop. Starting jobs from the server itself
cost that loop more: `subprocess` forks with vfork and holds the GIL until the child has
exec'd, and the wrapper's start ran at the server's priority until it lowered its own.

Per job: `{"op": "fork", ...}` → the runner forks a child that leaves the runner's process
group (its own, so Stop's `killpg` reaches it; still in the server's session, `priority.py`)
and tells the runner it did; the runner answers `{"pid": N, "start_time": T}` (its /proc start
time, read while the child waits). The child then waits on a private pipe for the server's
`{"op": "go", "pid": N}`, sent once the server holds the pid; without it (the runner died, the
server gave up on the answer) the child reads EOF and exits having run nothing, so no job ever
runs unrecorded. After "go" the child becomes the job: working folder, environment, priority,
log on stdout/stderr. A notebook's child then claims the job's state folder (lock and pid
file, `wrapper.py`), runs papermill's own CLI in-process with the job's argv (the same argv
the subprocess path runs, so `job.command` tells the truth) and writes the exit code file
atomically. Any other job's request carries `exec`, the wrapper's argv: the child execs it
(same pid), and the wrapper claims the folder, runs the job and writes its exit code.

The runner ignores SIGCHLD, so the kernel reaps its children at once (no zombies); the server
waits on a child like on any process that is not its own (pidfd). The runner exits on EOF of
its stdin (the server closed it, or died); children that were released live on.

This module is the runner program (`serve`, stdlib only until it imports papermill) and its
client in the server (`WarmRunner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from stat import S_ISREG
from typing import Any, NamedTuple, NoReturn, Protocol

from .priority import own_process_group
from .procfs import live_processes, proc_stat
from .wrapper import claim, lower_priority, write_atomically

# A job may not change the runner's interpreter: such variables only act at Python's start.
FORK_UNSAFE_ENV_PREFIX = "PYTHON"


# -- the runner program ------------------------------------------------------------------


def _reply(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _exit_code_of(exit: SystemExit) -> int:
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): Python prints it and exits with 1
    return 1


def _become_job(request: dict[str, Any]) -> None:
    """In the child, after "go": the job's priority (the runner's own, unless the request
    asks for less), working folder, environment, and its log on stdout and stderr."""
    lower_priority(0, str(request.get("priority", "0")))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # The server checked the log; a symlink or FIFO swapped in since is refused, not followed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
    log = os.open(request["log"], flags, 0o644)
    if not S_ISREG(os.fstat(log).st_mode):
        raise OSError(f"{request['log']} is not a regular file")
    os.set_blocking(log, True)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _exec_wrapper(request: dict[str, Any]) -> NoReturn:
    """Become the job and exec the wrapper program (`request["exec"]`, its whole argv). The
    wrapper claims the state folder itself; if it cannot be exec'd, nothing ran and no exit
    code is written (the server reports that), and the reason is in the log."""
    _become_job(request)
    argv: list[str] = request["exec"]
    try:
        os.execv(argv[0], argv)
    except OSError as err:
        print(f"awsjobs: cannot start the job's wrapper {argv[0]!r}: {err}", file=sys.stderr)
        sys.stderr.flush()
    os._exit(127)


def _run_job(request: dict[str, Any]) -> int:
    """Become the job and run papermill's CLI (in the child, after "go"); its exit code."""
    _become_job(request)
    argv: list[str] = request["argv"]
    sys.argv = ["papermill", *argv]
    from papermill.cli import papermill as cli

    return run_cli(cli.main, argv)


# jupyter_client picks a kernel's ports by binding port 0 and closing it, so a kernel started
# at the same moment elsewhere may take one first: the kernel dies before any cell ran.
KERNEL_START_FAILED = "Kernel died before replying to kernel_info"


def run_cli(main: Any, argv: list[str]) -> int:
    """Run papermill's CLI as `python -m papermill argv` would; its exit code. A kernel that
    died while starting (no cell has run) is started once more."""
    for attempt in (1, 2):
        try:
            main(args=argv, prog_name="papermill", standalone_mode=True)
        except SystemExit as exit:
            return _exit_code_of(exit)
        except BaseException as err:  # an uncaught error: what Python prints, and its code
            traceback.print_exc()
            if attempt == 1 and isinstance(err, RuntimeError) and KERNEL_START_FAILED in str(err):
                print("awsjobs: the kernel failed to start; starting it again", file=sys.stderr)
                continue
            return 1
        return 0
    return 1


# After a notebook's last cell, nbclient asks the kernel to shut down and jupyter_client waits
# for it to end: half of `shutdown_wait_time` (5 s by default) before SIGTERM. A kernel ends in
# about 0.1 s, but ipykernel 7.4 sometimes hangs there: its control thread waits for a flush that
# the IOPub thread, already stopped, never does. That cost a third of notebook jobs 2.5 s after
# their work was done. A kernel that hangs is ended at 1 s now (its clean-up is lost either way).
KERNEL_SHUTDOWN_WAIT_SECONDS = 2.0


def shorten_kernel_shutdown_wait() -> None:
    """The kernels of notebook jobs run by this runner get `KERNEL_SHUTDOWN_WAIT_SECONDS`."""
    from jupyter_client.manager import KernelManager  # imported by papermill's CLI already

    KernelManager.shutdown_wait_time.default_value = KERNEL_SHUTDOWN_WAIT_SECONDS


def _on_term(signum: int, frame: Any) -> None:
    """Stop: end the kernels too. jupyter_client starts each kernel in a session of its own,
    out of reach of the `killpg` that Stop sends to the job's group; they are our children."""
    me = os.getpid()
    for pid, stat in live_processes().items():
        if stat.ppid == me:
            try:  # a kernel leads its own group: end its subprocesses too
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the signal, as the job would have


def _child(request: dict[str, Any], gate: int, ready: int) -> NoReturn:
    code = 1
    try:
        os.setpgid(0, 0)
        for sig in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # the job's own, and its kernel's, defaults
        signal.signal(signal.SIGTERM, _on_term)
        os.write(ready, b"1")
        os.close(ready)
        if os.read(gate, 1) != b"1":
            os._exit(0)  # not released: run nothing, write nothing
        os.close(gate)
        if "exec" in request:
            _exec_wrapper(request)
        # Findable from the job's state folder before anything runs (as the wrapper does).
        if claim(os.path.dirname(request["exit_code"])) is None:
            os._exit(0)  # the server gave the job up: run nothing, write nothing
        code = _run_job(request)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    try:
        write_atomically(request["exit_code"], f"{code}\n")
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if 0 <= code < 256 else 1)


def _fork(request: dict[str, Any], gates: dict[int, int]) -> dict[str, Any]:
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Keep only stdio and our two pipe ends: no sibling's gate, so a sibling's EOF works.
        keep = sorted((gate_r, ready_w))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, 1 << 16)
        _child(request, gate_r, ready_w)
    os.close(gate_r)
    os.close(ready_w)
    try:
        started = os.read(ready_r, 1) == b"1"  # the child has left our group
    finally:
        os.close(ready_r)
    if not started:
        os.close(gate_w)
        return {"error": "the forked child ended before it started"}
    gates[pid] = gate_w
    # Read here, not by the server: the child waits at its gate (it cannot be exec'ing, when a
    # /proc read can block), and the server spends no worker-thread hop on it.
    stat = proc_stat(pid)
    return {"pid": pid, "start_time": stat.start_ticks if stat else None}


class ForkedChild(NamedTuple):
    """A child the runner forked: its pid and start time (`/proc` clock ticks; None without
    /proc), which together tell it from a later process that reuses the pid."""

    pid: int
    start_time: int | None


def serve(priority: str) -> None:
    """The runner's main loop (single-threaded, so forking it is safe). `priority`: the jobs'
    (`wrapper.lower_priority`), taken once the imports are done."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends us by closing stdin
    # jsonschema builds an IRI grammar at import when `rfc3987_syntax` is installed: most of
    # papermill's import time (seconds on a loaded machine), for a format that no nbformat
    # schema uses. Absent here (jsonschema then skips that format), the runner is ready
    # sooner, and so is the first notebook job after the server starts.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill.cli  # noqa: F401  (the point of the runner: imported once)

    shorten_kernel_shutdown_wait()
    # Only after the imports: the first notebook job waits for them, so they keep the
    # server's priority. A priority lowered is never raised again.
    lower_priority(0, priority)

    gates: dict[int, int] = {}
    _reply({"ready": True})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            if request.get("op") == "fork":
                _reply(_fork(request, gates))
            elif request.get("op") == "go":
                gate = gates.pop(int(request["pid"]), None)
                if gate is not None:
                    with contextlib.suppress(OSError):  # the child may have been killed
                        os.write(gate, b"1")
                    os.close(gate)
        except Exception as err:  # a bad request must not end the runner
            _reply({"error": f"{type(err).__name__}: {err}"})
    # EOF: the server is gone. Unreleased children read EOF and exit; released ones live on.


# -- the client, in the server -------------------------------------------------------------


# How the runner is started, early or not. Its stderr is the server's (its own errors, if
# any); its own process group keeps a terminal's Ctrl-C, meant for the server, away from it.
_SPAWN_OPTIONS: dict[str, Any] = {"stderr": None, "cwd": "/", **own_process_group()}


class _RunnerProcess(Protocol):
    """What the client needs of the runner's process (asyncio's `Process` has it)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    def kill(self) -> None: ...
    async def wait(self) -> int: ...


class _AdoptedProcess:
    """A runner started by `subprocess.Popen` before the event loop ran (`WarmRunner.
    spawn_early`), driven through asyncio streams once it runs."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self._popen = popen
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> _AdoptedProcess:
        assert popen.stdin is not None and popen.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader())  # flow control only
        transport, _ = await loop.connect_write_pipe(lambda: protocol, popen.stdin)
        return cls(popen, asyncio.StreamWriter(transport, protocol, None, loop), reader)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def kill(self) -> None:
        self._popen.kill()
        if self.stdin is not None:
            self.stdin.close()
        # Reaped in a thread: asyncio's child watcher does not know this process.
        asyncio.get_running_loop().run_in_executor(None, self._popen.wait)

    async def wait(self) -> int:
        return await asyncio.to_thread(self._popen.wait)


async def _end(popen: subprocess.Popen[bytes]) -> None:
    """Kill and reap a runner that was never adopted, and close our ends of its pipes."""
    with contextlib.suppress(ProcessLookupError):
        popen.kill()
    await asyncio.to_thread(popen.wait)
    for pipe in (popen.stdin, popen.stdout):
        if pipe is not None:
            pipe.close()


class WarmRunner:
    """The server's side: starts the runner, asks it to fork, releases children, stops it.

    Every failure is reported as None/False so the caller falls back to a plain subprocess:
    the runner must never be the reason a job fails.
    """

    def __init__(
        self,
        python: str,
        log: logging.Logger,
        priority: str = "0",
        timeout: float = 10.0,
        restart_seconds: float = 30.0,
    ) -> None:
        self.python = python
        self.log = log
        self.priority = priority  # the jobs' (`wrapper.lower_priority`): the runner's once ready
        self.timeout = timeout
        self.restart_seconds = restart_seconds  # at most one (re)start in this time
        self._last_start: float | None = None
        self._proc: _RunnerProcess | None = None
        self._early: subprocess.Popen[bytes] | None = None  # spawned before the loop ran
        self._ready = False
        self._lock = asyncio.Lock()
        self._starting: asyncio.Task[None] | None = None
        self._starts_ended = 0  # starts that have ended, ready or not

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def ready(self) -> bool:
        return self._ready and self._proc is not None and self._proc.returncode is None

    def spawn_early(self) -> None:
        """Start the runner's process now, before the event loop runs (the extension's load):
        its imports then overlap the rest of the server's start, and the first notebook job
        finds it ready. `ensure_started` adopts it. If the server dies before that, the
        runner reads EOF on its stdin and exits."""
        if self._early is not None or self._proc is not None:
            return
        try:
            self._early = subprocess.Popen(
                self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, **_SPAWN_OPTIONS
            )
        except OSError as err:
            self.log.warning("awsjobs: cannot start the warm notebook runner: %s", err)

    def _argv(self) -> list[str]:
        return [self.python, "-m", __name__, self.priority]

    def ensure_started(self) -> None:
        """Start (or restart) the runner in the background, unless it runs or is starting."""
        if self.ready() or (self._starting is not None and not self._starting.done()):
            return
        loop = asyncio.get_running_loop()
        if self._last_start is not None and loop.time() - self._last_start < self.restart_seconds:
            return  # a runner that keeps dying must not cost a process start per job
        self._last_start = loop.time()
        self._starting = asyncio.get_running_loop().create_task(
            self._start(), name="awsjobs-warm-runner-start"
        )

    def first_start_pending(self) -> bool:
        """Whether the runner's first start (with the server's) is still under way."""
        return self._starts_ended == 0 and self._starting is not None and not self._starting.done()

    async def wait_started(self, timeout: float | None = None) -> bool:
        """Whether the runner is ready, once a start under way has ended (or `timeout`
        seconds have passed: the start goes on, the caller does without it)."""
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._starting), timeout)
        return self.ready()

    async def _start(self) -> None:
        try:
            await self._start_process()
        finally:
            self._starts_ended += 1

    async def _start_process(self) -> None:
        self._kill()
        proc = await self._adopt_early() or await self._spawn()
        if proc is None:
            return
        self._proc = proc
        assert proc.stdout is not None
        try:
            # The imports take seconds on a loaded machine: generous, and only this task waits.
            line = await asyncio.wait_for(proc.stdout.readline(), 30 * self.timeout)
            self._ready = json.loads(line).get("ready") is True
        except (asyncio.TimeoutError, ValueError, AttributeError):
            self._ready = False
        if not self._ready:
            self.log.warning("awsjobs: the warm notebook runner did not start; not using it")
            self._kill()

    async def _adopt_early(self) -> _RunnerProcess | None:
        """The process `spawn_early` started, if it still runs."""
        early, self._early = self._early, None
        if early is None:
            return None
        if early.poll() is None:
            try:
                return await _AdoptedProcess.adopt(early)
            except OSError as err:
                self.log.warning("awsjobs: the early warm notebook runner is unusable: %s", err)
        await _end(early)
        return None

    async def _spawn(self) -> _RunnerProcess | None:
        try:
            return await asyncio.create_subprocess_exec(
                *self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, **_SPAWN_OPTIONS
            )
        except OSError as err:
            self.log.warning("awsjobs: cannot start the warm notebook runner: %s", err)
            return None

    def _kill(self) -> None:
        """End the runner now; children not yet released read EOF and run nothing."""
        self._ready = False
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def fork(self, request: dict[str, Any]) -> ForkedChild | None:
        """Ask for a child that will run `request` once released; it, or None."""
        if not self.ready():
            return None
        async with self._lock:
            proc = self._proc
            if proc is None or not self.ready():
                return None
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write((json.dumps({"op": "fork", **request}) + "\n").encode())
                await asyncio.wait_for(proc.stdin.drain(), self.timeout)
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
                answer = json.loads(line)
                pid, started = answer.get("pid"), answer.get("start_time")
            except (OSError, asyncio.TimeoutError, ValueError, AttributeError) as err:
                self.log.warning("awsjobs: the warm notebook runner failed (%r); restarting", err)
                self._kill()  # a child forked meanwhile is never released: it runs nothing
                self.ensure_started()
                return None
            if not isinstance(pid, int):
                self.log.warning("awsjobs: the warm notebook runner refused: %s", answer)
                return None
            return ForkedChild(pid, started if isinstance(started, int) else None)

    async def release(self, pid: int) -> bool:
        """Let the child `pid` run. False if the runner is gone (the child then runs nothing)."""
        async with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.returncode is not None:
                return False
            try:
                proc.stdin.write((json.dumps({"op": "go", "pid": pid}) + "\n").encode())
                await asyncio.wait_for(proc.stdin.drain(), self.timeout)
            except (OSError, asyncio.TimeoutError):
                self._kill()
                self.ensure_started()
                return False
            return True

    async def close(self) -> None:
        """Stop the runner (by EOF, then a kill); the jobs it started live on."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        if self._early is not None:  # spawned, never adopted (the server never ran its loop)
            early, self._early = self._early, None
            await _end(early)
        proc, self._proc = self._proc, None
        self._ready = False
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), self.timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "0")
