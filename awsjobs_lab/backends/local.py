"""The local backend: each job is a detached process group on this machine.

The job's argv runs under a tiny wrapper (`python -I -S wrapper.py <exit_code file> <priority>
argv...`, a constant program, nothing built from user input) that waits for the job and writes
its exit code to `job_state_dir(job)/exit_code`, so the outcome is known even when the server
restarted and the process is no longer our child. Before the job runs, the wrapper leaves a
lock and a pid file in that folder (`wrapper.py`), so a job whose pid was never recorded (the
server killed between the start and the record) is found again, or certain never to run
(`process_finder.py`). The wrapper leads its own process group, so the job survives a server
stop (a terminal's Ctrl-C signals the server's group) and Stop signals the whole group; it stays
in the server's session, where its lower CPU priority counts (`priority.py`).

Jobs start from the warm runner (`warm.py`) once it is ready: a fork server already at the
jobs' CPU priority. Its child execs the wrapper, or, for a notebook, runs papermill in-process
(already imported there). The handle and the exit code file are the same either way. Until
the runner is ready, or if anything goes wrong with it, the server starts the wrapper itself.

The handle persisted on the job: `pid` (the wrapper, or the runner's child), `pgid`,
`start_time` (from /proc/<pid>/stat, to tell our process from a later one that reuses the pid).

Starting a job stays off the event loop: the runner forks and execs in its own process; the
server's own start (`subprocess.Popen`) runs in a worker thread, since fork, exec and the wait
for the exec cost milliseconds to tens of milliseconds on a loaded machine. /proc reads about
a starting job are made in a worker thread too: one can wait for the job's exec. A semaphore
bounds how many jobs start at once, and jobs run at a lower CPU priority than the server.

Waiting costs nothing while jobs run: a `pidfd` becomes readable when the process ends (our own
children are then reaped; a slow poll where pidfds are missing). No thread per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int

from ..errors import BackendError
from ..jobfiles import outcome_from_exit_code
from ..models import Job, JobState, Outcome
from ..phases import FINISHING, PREPARING, RUNNING
from ..requests import inside_root_unchanged
from ..runners import build_command
from ..safeopen import check_regular, open_regular
from . import process_finder
from .base import Backend, RecordHandle
from .priority import job_priority, own_process_group
from .procfs import has_procfs, live_processes, proc_stat
from .warm import FORK_UNSAFE_ENV_PREFIX, WarmRunner
from .wrapper import lower_priority

# The wrapper program (a file run by path: the job's Python runs isolated, without our package).
WRAPPER = str(Path(__file__).with_name("wrapper.py"))


def wrapper_argv(exit_code: Path, priority: str, argv: list[str]) -> list[str]:
    """The wrapper program running the job's `argv` (whoever starts it: the runner or us)."""
    return [sys.executable, "-I", "-S", WRAPPER, str(exit_code), priority, *argv]


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat.start_ticks if stat else None


def is_alive(pid: int, started: int | None) -> bool:
    """Whether `pid` is still the process we started (not a zombie, not a reused pid)."""
    stat = proc_stat(pid)
    if stat is None:
        if has_procfs():
            return False
        try:  # no /proc: signal 0 says whether the pid exists at all
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return not stat.is_dead and (started is None or stat.start_ticks == started)


def pidfd_if_alive(pid: int, started: int | None) -> int | None:
    """A pidfd of `pid` if it is still the process we started; -1 if it is but pidfds are
    unavailable (old kernel, not Linux); None once it has ended. Blocking (/proc reads): in a
    worker thread, one hop for all three steps."""
    if not is_alive(pid, started):
        return None
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1
    # The pid may have ended and been reused between the check and pidfd_open.
    if not is_alive(pid, started):
        os.close(fd)
        return None
    return fd


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    if not has_procfs():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    return [pid for pid, stat in live_processes().items() if stat.pgid == pgid]


class LocalBackend(Backend):
    id = "local"
    label = "This machine"

    stop_grace_seconds = Float(
        10.0,
        help="Seconds between SIGTERM and SIGKILL when a local job is stopped.",
        config=True,
    )
    poll_seconds = Float(
        5.0,
        help="How often to check a job's process when pidfds are unavailable (not Linux).",
        config=True,
    )
    niceness = Int(
        19,
        help="How much lower than the server's the CPU priority of local jobs is (added to "
        "the server's niceness, at most 19), so that the server stays responsive while many "
        "jobs start or run. It orders jobs after the server and the processes of its session "
        "(a terminal's) only: a job still gets a whole core when the server is idle. 0 runs "
        "jobs at the server's priority.",
        config=True,
    )
    idle_policy = Bool(
        True,
        help="On Linux, also run local jobs under the SCHED_IDLE scheduling policy, below any "
        "niceness: a job yields the CPU to the server at once, so hundreds of jobs starting "
        "together do not delay its answers. Like the niceness, it only orders jobs after the "
        "server and its session; jobs still get whole cores while the server is idle.",
        config=True,
    )
    max_concurrent_launches = Int(
        2,
        help="How many local jobs may be starting (checking their files, forking) at the same "
        "moment; more wait their turn in 'launching'. Each start is work in a server thread "
        "that competes with the thread answering requests for the CPU and the GIL: two at a "
        "time keep the server responsive while hundreds of jobs are submitted at once (the "
        "last of 200 starts about 0.5 s later than with 8 at a time).",
        config=True,
    )
    warm_notebook_runner = Bool(
        True,
        help="Start local jobs from a helper process (a fork server started with the server, "
        "at the jobs' CPU priority) rather than from the server itself: notebooks run in it "
        "with papermill already imported, which saves seconds per notebook job, and no job "
        "start competes with the server's answers. Any trouble with it falls back to a new "
        "process started by the server.",
        config=True,
    )
    warm_start_wait_seconds = Float(
        15.0,
        help="How long a notebook job waits for the warm runner while it is still starting "
        "(the first jobs after the server started) before running without it.",
        config=True,
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Our own children (wrappers), by job id: reaped once their pidfd says they ended.
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._launch_slots: asyncio.Semaphore | None = None
        self._queued: set[str] = set()  # launches waiting for a slot
        self._stop_requested: set[str] = set()
        self._warm: WarmRunner | None = None

    def _warm_runner(self) -> WarmRunner:
        """The warm runner's client, made once (by `prepare`, else by `start`)."""
        if self._warm is None:
            priority = job_priority(self.niceness, self.idle_policy)
            self._warm = WarmRunner(sys.executable, self.log, priority)
        return self._warm

    def prepare(self) -> None:
        if self.warm_notebook_runner:
            self._warm_runner().spawn_early()  # its imports overlap the server's own start

    async def start(self) -> None:
        if self.warm_notebook_runner:
            self._warm_runner().ensure_started()  # in the background: never delays the server

    async def close(self) -> None:
        if self._warm is not None:
            await self._warm.close()  # jobs it started lead their own groups: they live on
            self._warm = None

    def request_stop(self, job_id: str) -> None:
        if job_id in self._queued:
            self._stop_requested.add(job_id)  # a launch still waiting for its turn gives up

    async def launch(self, job: Job, record: RecordHandle) -> None:
        await self.phases.report(job.id, PREPARING)
        if self._launch_slots is None:
            self._launch_slots = asyncio.Semaphore(max(1, self.max_concurrent_launches))
        self._queued.add(job.id)
        try:
            async with self._launch_slots:
                self._queued.discard(job.id)
                if job.id in self._stop_requested:
                    raise BackendError("stopped before its process was started")
                await self._launch(job, record)
        finally:
            self._queued.discard(job.id)
            self._stop_requested.discard(job.id)

    async def _launch(self, job: Job, record: RecordHandle) -> None:
        argv = build_command(job, sys.executable)
        exit_code = self.exit_code_path(job)
        env = {**os.environ, **job.env, process_finder.JOB_ID_VARIABLE: job.id}
        priority = job_priority(self.niceness, self.idle_policy)
        script, log = await asyncio.to_thread(self._prepare, job)
        if self._warm is not None and await self._warm_fits(job, argv):
            request = {
                "cwd": str(script.parent),
                "env": env,
                "log": str(log),
                "exit_code": str(exit_code),
                "priority": priority,
                **self._runner_work(argv, exit_code, priority),
            }
            child = await self._warm.fork(request)
            if child is not None:
                pid = child.pid
                handle = {"pid": pid, "pgid": pid, "start_time": child.start_time, "warm": True}
                await self._record(job, record, handle, argv)
                if await self._warm.release(pid):
                    return
                # The child was never released: it exits having run nothing. Start it anew.
                self.log.warning("awsjobs: job %s: the warm runner went away; retrying", job.id)

        def start() -> tuple[subprocess.Popen[bytes], int | None]:
            proc = self._popen(argv, exit_code, log, script.parent, env, priority)
            return proc, start_time(proc.pid)  # a /proc read: off the loop too

        proc, started = await asyncio.to_thread(start)
        self._children[job.id] = proc
        handle = {"pid": proc.pid, "pgid": proc.pid, "start_time": started, "warm": False}
        await self._record(job, record, handle, argv)

    def _prepare(self, job: Job) -> tuple[Path, Path]:
        """Re-check the script and the log (either may have been replaced by a link since the
        job was accepted) and make the job's state folder ready. Blocking: in a thread."""
        root = Path(self.root_dir).resolve()
        script = inside_root_unchanged(root, job.path, "path")
        log = inside_root_unchanged(root, job.log_path, "log_path")
        try:
            check_regular(script)
        except OSError as err:
            raise BackendError(f"path: {job.path!r} is no longer a regular file: {err}") from None
        with contextlib.suppress(FileNotFoundError):  # a new log is created at the start
            if not stat.S_ISREG(log.lstat().st_mode):
                raise BackendError(f"log_path: {job.log_path!r} is not a regular file; not run")
        state = self.job_state_dir(job)
        try:
            state.mkdir(parents=True, exist_ok=True)
            self.exit_code_path(job).unlink(missing_ok=True)
            process_finder.forget(state)
        except OSError as err:
            raise BackendError(f"cannot create the job's state folder: {err}") from err
        return script, log

    async def _record(
        self, job: Job, record: RecordHandle, handle: dict[str, Any], argv: list[str]
    ) -> None:
        """Save the handle; if that fails (the store cannot be written), end the process we
        just started before failing: the job will read failed, so nothing may run on."""
        job.handle.update(handle)
        job.command = argv
        try:
            await record(handle, command=argv)
        except Exception:
            with contextlib.suppress(Exception):
                await self.stop(job)
            raise

    @staticmethod
    def _runs_in_runner(argv: list[str]) -> bool:
        """Whether the runner's child runs `argv` in-process (papermill, imported there)."""
        return argv[1:3] == ["-m", "papermill"]

    def _runner_work(self, argv: list[str], exit_code: Path, priority: str) -> dict[str, Any]:
        """What the runner's child does: papermill's CLI with its own arguments, or exec the
        wrapper with the argv the server would have started."""
        if self._runs_in_runner(argv):
            return {"argv": argv[3:]}  # after `python -m papermill`
        return {"exec": wrapper_argv(exit_code, priority, argv)}

    async def _warm_fits(self, job: Job, argv: list[str]) -> bool:
        """Whether the warm runner can start `job` exactly as its argv would. For a notebook,
        its first start (with the server's) is waited for, a while: it began importing before
        this job was submitted, so it is ready before a new `python -m papermill` would be.
        Other jobs never wait (the server starts the wrapper as fast), nor does anything after
        a restart (the runner died)."""
        if self._warm is None:
            return False
        in_process = self._runs_in_runner(argv)
        # A variable such as PYTHONPATH acts only at Python's start: in-process, it would not.
        if in_process and any(key.startswith(FORK_UNSAFE_ENV_PREFIX) for key in job.env):
            return False
        if in_process and self._warm.first_start_pending():
            return await self._warm.wait_started(self.warm_start_wait_seconds)
        self._warm.ensure_started()  # restarted if it died (not more often than its backoff)
        return self._warm.ready()

    def _popen(
        self,
        argv: list[str],
        exit_code: Path,
        log: Path,
        cwd: Path,
        env: dict[str, str],
        priority: str,
    ) -> subprocess.Popen[bytes]:
        """Start the wrapper (in a worker thread: fork, exec and its wait stay off the loop)."""
        try:  # never through a symlink swapped in, never blocking on a FIFO
            log_fd = open_regular(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except OSError as err:
            raise BackendError(f"cannot create the job's log: {err}") from err
        try:
            proc = subprocess.Popen(
                wrapper_argv(exit_code, priority, argv),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                **own_process_group(),
            )
        except OSError as err:
            raise BackendError(f"cannot start the job: {err}") from err
        finally:
            os.close(log_fd)
        # The wrapper lowers its own priority first thing; this covers its start-up too.
        lower_priority(proc.pid, priority)
        return proc

    async def wait(self, job: Job) -> Outcome:
        await self.phases.report(job.id, RUNNING)  # also re-derived after a restart
        outcome = await self._wait_ended(job)
        await self.phases.report(job.id, FINISHING)
        return outcome

    async def _wait_ended(self, job: Job) -> Outcome:
        proc = self._children.get(job.id)
        if proc is not None:
            try:
                returncode = await self._wait_child(proc)
            finally:
                if proc.returncode is not None:
                    self._children.pop(job.id, None)
            code = await asyncio.to_thread(self.read_exit_code, job)
            if code is None:
                return Outcome(
                    JobState.FAILED,
                    error=f"the job's wrapper ended without an exit code ({returncode})",
                )
            return outcome_from_exit_code(code)
        pid = job.handle.get("pid")
        if not isinstance(pid, int):
            return Outcome(JobState.FAILED, error="no process was recorded for this job")
        if await asyncio.to_thread(self.read_exit_code, job) is None:
            await self._wait_gone(pid, job.handle.get("start_time"))
        return await self._ended(job, "the process ended without writing an exit code")

    async def _wait_child(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for our own child to end, then reap it (no zombie). An unreaped child keeps
        its pid, so its pidfd cannot belong to another process."""
        if proc.poll() is None:
            try:
                fd = os.pidfd_open(proc.pid)
            except (AttributeError, OSError):
                fd = -1
            if fd >= 0:
                try:
                    await _readable(fd)
                finally:
                    os.close(fd)
        while True:
            code = proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(self.poll_seconds)  # no pidfd (old kernel, not Linux)

    async def _wait_gone(self, pid: int, started: int | None) -> None:
        """Return once `pid` (not our child) has ended: a pidfd, else a slow poll."""
        fd = await asyncio.to_thread(pidfd_if_alive, pid, started)
        if fd is None:
            return
        if fd >= 0:
            try:
                await _readable(fd)
            finally:
                os.close(fd)
            return
        while True:  # no pidfd (old kernel, not Linux): a slow poll
            await asyncio.sleep(self.poll_seconds)
            if not await asyncio.to_thread(is_alive, pid, started):
                return

    async def _ended(self, job: Job, missing: str) -> Outcome:
        code = await asyncio.to_thread(self.read_exit_code, job)
        if code is None:
            return Outcome(JobState.FAILED, error=missing)
        return outcome_from_exit_code(code)

    async def reattach(self, job: Job) -> Outcome | None:
        pid = job.handle.get("pid")
        if not isinstance(pid, int):
            return await self._reattach_unrecorded(job)
        if job.id in self._children:
            return None
        # The exit code file is written last, just before the wrapper exits: if it is there,
        # the job has ended, whatever process may now hold its pid.
        code = await asyncio.to_thread(self.read_exit_code, job)
        if code is not None:
            return outcome_from_exit_code(code)
        if await asyncio.to_thread(is_alive, pid, job.handle.get("start_time")):
            return None
        return await self._ended(
            job, "the process ended while the server was down, without an exit code"
        )

    async def _reattach_unrecorded(self, job: Job) -> Outcome | None:
        """A job whose pid was never recorded: find its process by what it left in its state
        folder. Alive: the handle is filled in (the driver saves it) and the job is watched.
        Otherwise it is certain never to run, and how it ended (if it ran) is reported."""
        found = await self._find(job)
        if found.alive:
            job.handle.update(await asyncio.to_thread(found.handle))
            return None
        if found.pid is None:
            return Outcome(
                JobState.FAILED, error="the server stopped before the job's process was started"
            )
        return await self._ended(
            job, "the process ended while the server was down, without an exit code"
        )

    async def _find(self, job: Job) -> process_finder.FoundProcess:
        """The job's process from its state folder (`BackendError` while it is too early to
        tell: a process holds the lock but has not written its pid file yet)."""
        try:
            found = await asyncio.to_thread(process_finder.find, self.job_state_dir(job))
        except OSError as err:
            raise BackendError(f"cannot read the job's state folder: {err}") from err
        if found.alive and found.pid is None:
            raise BackendError("the job's process is starting; its pid is not written yet")
        return found

    async def stop(self, job: Job) -> None:
        pgid = job.handle.get("pgid")
        if not isinstance(pgid, int):
            # No pid recorded: stop the process found from its state folder, if any (when
            # none is found, none will ever run).
            found = await self._find(job)
            if not found.alive or found.pgid is None:
                return
            pgid = found.pgid
            job.handle.update(await asyncio.to_thread(found.handle))
        leader = job.handle.get("pid")
        started = job.handle.get("start_time")
        # If the leader's pid now belongs to another process, the group is not ours.
        stat = await asyncio.to_thread(proc_stat, leader) if isinstance(leader, int) else None
        if stat is not None and started is not None and stat.start_ticks != started:
            return
        gone = await self._signal_group(pgid, signal.SIGTERM, self.stop_grace_seconds)
        if not gone and not await self._signal_group(pgid, signal.SIGKILL, 10.0):
            raise BackendError(f"process group {pgid} is still alive after SIGKILL")
        proc = self._children.get(job.id)
        if proc is not None:
            proc.poll()  # reap our child: the group is gone, so it has ended

    async def _signal_group(self, pgid: int, sig: signal.Signals, grace: float) -> bool:
        """Send `sig` to the group; True once no process of it is left within `grace` s."""
        members = await asyncio.to_thread(group_members, pgid)
        if not members:
            return True
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError as err:
            raise BackendError(f"not allowed to signal process group {pgid}") from err
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        delay = 0.05
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            if not await asyncio.to_thread(group_members, pgid):
                return True
            delay = min(delay * 2, 0.5)
        return not await asyncio.to_thread(group_members, pgid)


async def _readable(fd: int) -> None:
    """Wait until `fd` (a pidfd) is readable, through the loop's selector: no thread, no poll."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await ended
    finally:
        loop.remove_reader(fd)
