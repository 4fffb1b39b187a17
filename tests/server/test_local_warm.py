"""LocalBackend's warm runner: notebooks (success, a failing cell, Stop of the child and its
kernel), other jobs (the wrapper exec'd at the jobs' priority, Stop, no wait for a starting
runner, /proc reads off the loop), a dead runner (fallback, restart), re-attach after a
restart, jobs outliving close().

Nothing here is timed: every check is structural, or polls until a state is reached."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from awsjobs_lab.backends import local as local_module
from awsjobs_lab.backends import warm as warm_module
from awsjobs_lab.backends.local import LocalBackend, group_members, is_alive
from awsjobs_lab.backends.priority import job_niceness
from awsjobs_lab.backends.warm import ForkedChild
from awsjobs_lab.models import Job, JobState
from tests.server.helpers import WAIT_SECONDS, children_of, kill_leftovers, launch, make_job, poll


@pytest.fixture
async def warm(tmp_path: Path) -> AsyncIterator[tuple[LocalBackend, list[Job]]]:
    """A started backend whose warm runner is up."""
    b = LocalBackend(stop_grace_seconds=3.0, poll_seconds=0.2)
    b.root_dir = str(tmp_path)
    await b.start()
    assert b._warm is not None
    assert await b._warm.wait_started(), "the warm runner did not start"
    jobs: list[Job] = []
    yield b, jobs
    await b.close()
    kill_leftovers(jobs)


def notebook(tmp_path: Path, name: str, *sources: str) -> Job:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, tmp_path / name)
    return make_job(name)


# -- the warm notebook runner ------------------------------------------------------------


async def test_a_notebook_runs_in_the_warm_runner(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    job = notebook(
        tmp_path,
        "nb.ipynb",
        "import os\nprint('niceness', os.nice(0))",
        # the kernel has a session of its own (jupyter_client's); its parent, the job, has ours
        "print('job session', os.getsid(os.getppid()), 'group', os.getpgid(os.getppid()))",
        "print('idle policy', os.sched_getscheduler(os.getppid()) == os.SCHED_IDLE)",
    )
    job.env = {"GREETING": "hi"}
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True and rec.handle["pid"] == rec.handle["pgid"]
    assert isinstance(rec.handle["start_time"], int)
    assert rec.fields["command"][1:3] == ["-m", "papermill"]
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    log = (tmp_path / job.log_path).read_text()
    assert outcome.state is JobState.SUCCEEDED and outcome.exit_code == 0, log
    assert backend.read_exit_code(job) == 0
    assert f"niceness {job_niceness(backend.niceness)}" in log
    out = nbformat.read(tmp_path / f"nb.{job.id}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "niceness" in text
    assert f"job session {os.getsid(0)} group {rec.handle['pgid']}" in text
    assert "idle policy True" in text
    assert backend._warm is not None and backend._warm.pid is not None
    assert not [c for c in children_of(backend._warm.pid) if c[1] == "Z"]  # no zombie


async def test_a_failing_cell_fails_with_exit_code_1(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    job = notebook(tmp_path, "bad.ipynb", "raise ValueError('broken on purpose')")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED and outcome.exit_code == 1
    log = (tmp_path / job.log_path).read_text()
    assert "ValueError" in log and "broken on purpose" in log and "Traceback" in log


async def test_stop_of_a_warm_job_ends_the_child_and_its_kernel(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    job = notebook(
        tmp_path, "long.ipynb", "print('started', flush=True)", "import time\ntime.sleep(600)"
    )
    rec = await launch(backend, jobs, job)
    pid = rec.handle["pid"]

    async def kernel() -> list[int]:
        return [p for p, state in children_of(pid) if state != "Z"]

    kernels = await poll(kernel, "the notebook's kernel to start")

    async def first_cell_ran() -> bool:
        return "started" in (tmp_path / job.log_path).read_text()

    await poll(first_cell_ran, "the first cell to run")
    await backend.stop(job)
    assert not group_members(rec.handle["pgid"])

    async def kernels_gone() -> bool:
        return not any(is_alive(k, None) for k in kernels)

    await poll(kernels_gone, "the kernel to end")
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED  # killed: no exit code written


async def test_a_dead_runner_falls_back_and_is_restarted(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    runner = backend._warm
    assert runner is not None and runner.pid is not None
    runner.restart_seconds = 0.0
    os.kill(runner.pid, signal.SIGKILL)

    async def dead() -> bool:
        return not runner.ready()

    await poll(dead, "the runner to be seen dead")
    job = notebook(tmp_path, "nb.ipynb", "print('fell back')")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is False  # a plain papermill process
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.SUCCEEDED, (tmp_path / job.log_path).read_text()
    assert await runner.wait_started()  # and the runner was started again


async def test_a_runner_lost_before_release_runs_the_job_anew(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = warm
    runner = backend._warm
    assert runner is not None
    forked: list[int] = []
    real_fork = runner.fork

    async def fork_then_die(request: dict[str, Any]) -> ForkedChild | None:
        child = await real_fork(request)
        assert child is not None
        forked.append(child.pid)
        runner._kill()  # the runner dies before the child is released
        return child

    monkeypatch.setattr(runner, "fork", fork_then_die)
    job = notebook(tmp_path, "nb.ipynb", "print('ran once')")
    rec = await launch(backend, jobs, job)
    assert forked and rec.handle["pid"] != forked[0] and rec.handle["warm"] is False

    async def unreleased_gone() -> bool:
        return not is_alive(forked[0], None)

    await poll(unreleased_gone, "the unreleased child to exit")
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    log = (tmp_path / job.log_path).read_text()
    assert outcome.state is JobState.SUCCEEDED, log
    out = nbformat.read(tmp_path / f"nb.{job.id}.ipynb", as_version=4)
    assert "ran once" in "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))


async def test_warm_jobs_survive_close_and_are_reattached(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    job = notebook(
        tmp_path,
        "gated.ipynb",
        "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\nprint('went')",
    )
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True
    runner_pid = backend._warm.pid if backend._warm else None
    await backend.close()  # the server stops: the runner goes, the job stays
    assert runner_pid is not None and not is_alive(runner_pid, None)
    assert is_alive(job.handle["pid"], job.handle["start_time"])

    restarted = LocalBackend(poll_seconds=0.2)  # a new server, without the runner
    restarted.root_dir = str(tmp_path)
    assert await restarted.reattach(job) is None  # still running
    waiter = asyncio.ensure_future(restarted.wait(job))
    (tmp_path / "go").touch()
    outcome = await asyncio.wait_for(waiter, WAIT_SECONDS)
    assert outcome.state is JobState.SUCCEEDED, (tmp_path / job.log_path).read_text()
    assert "went" in (tmp_path / job.log_path).read_text()
    assert await restarted.reattach(job) == outcome  # after the end: from the exit code file


async def test_notebooks_with_python_variables_do_not_use_the_runner(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    job = notebook(tmp_path, "nb.ipynb", "print('ok')")
    job.env = {"PYTHONHASHSEED": "0"}  # only acts at an interpreter's start
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is False
    assert (await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)).state is JobState.SUCCEEDED


# -- other jobs: the runner's child execs the wrapper ----------------------------------------


async def test_a_script_starts_from_the_runner_at_the_jobs_priority(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "job.py").write_text(
        "import os\n"
        "print('cwd', os.getcwd())\n"
        "print('greeting', os.environ.get('GREETING'))\n"
        "print('niceness', os.nice(0))\n"
        "print('idle policy', os.sched_getscheduler(0) == os.SCHED_IDLE)\n"
        "print('wrapper', os.getppid(), 'group', os.getpgid(0), 'session', os.getsid(0))\n"
        "raise SystemExit(3)\n"
    )
    job = make_job("sub/job.py")
    job.env = {"GREETING": "hi"}
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True and rec.handle["pid"] == rec.handle["pgid"]
    assert isinstance(rec.handle["start_time"], int)
    assert rec.fields["command"][1:] == ["job.py"]  # the job's own argv, as without the runner
    assert rec.handle["pid"] not in [pid for pid, _ in children_of(os.getpid())]
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    log = (tmp_path / job.log_path).read_text()
    assert outcome.state is JobState.FAILED and outcome.exit_code == 3, log
    assert backend.read_exit_code(job) == 3  # written by the wrapper the child exec'd
    assert f"cwd {tmp_path / 'sub'}\n" in log and "greeting hi\n" in log
    assert f"niceness {job_niceness(backend.niceness)}\n" in log and "idle policy True\n" in log
    pid = rec.handle["pid"]
    assert f"wrapper {pid} group {pid} session {os.getsid(0)}\n" in log


async def test_the_runner_takes_the_jobs_priority_once_ready(tmp_path: Path) -> None:
    for niceness, idle in ((19, True), (5, False)):
        backend = LocalBackend(niceness=niceness, idle_policy=idle)
        backend.root_dir = str(tmp_path)
        await backend.start()
        try:
            runner = backend._warm
            assert runner is not None and await runner.wait_started()
            assert runner.pid is not None
            assert os.getpriority(os.PRIO_PROCESS, runner.pid) == job_niceness(niceness)
            assert (os.sched_getscheduler(runner.pid) == os.SCHED_IDLE) is idle
        finally:
            await backend.close()


async def test_stop_of_a_script_started_by_the_runner_ends_its_group(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path
) -> None:
    backend, jobs = warm
    (tmp_path / "long.sh").write_text("echo started\nsleep 600 & wait\n")
    job = make_job("long.sh")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True

    async def started() -> bool:
        log = tmp_path / job.log_path  # made by the runner's child, once released
        return log.exists() and "started" in log.read_text()

    await poll(started, "the script to start")
    assert len(group_members(rec.handle["pgid"])) >= 3  # the wrapper, bash and its sleep
    await backend.stop(job)
    assert not group_members(rec.handle["pgid"])
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED


async def test_a_script_never_waits_for_a_runner_still_starting(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = warm
    runner = backend._warm
    assert runner is not None

    async def must_not_wait(timeout: float | None = None) -> bool:
        raise AssertionError("a script waited for the runner")

    monkeypatch.setattr(runner, "ready", lambda: False)
    monkeypatch.setattr(runner, "first_start_pending", lambda: True)
    monkeypatch.setattr(runner, "wait_started", must_not_wait)
    (tmp_path / "ok.py").write_text("print('ok')\n")
    job = make_job("ok.py")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is False  # started by the server, at once
    assert (await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)).state is JobState.SUCCEEDED


async def test_proc_reads_about_a_runner_child_stay_off_the_event_loop(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/<pid>/stat of a process in the middle of its exec can take tens of ms to read."""
    backend, jobs = warm
    loop_thread = threading.get_ident()
    on_the_loop: list[int] = []
    real = local_module.proc_stat

    def watched(pid: int) -> Any:
        if threading.get_ident() == loop_thread:
            on_the_loop.append(pid)
        return real(pid)

    monkeypatch.setattr(local_module, "proc_stat", watched)
    (tmp_path / "gated.py").write_text(
        "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n"
    )
    job = make_job("gated.py")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True
    waiter = asyncio.ensure_future(backend.wait(job))
    await asyncio.sleep(0.2)
    (tmp_path / "go").touch()
    assert (await asyncio.wait_for(waiter, WAIT_SECONDS)).state is JobState.SUCCEEDED
    restarted = LocalBackend()
    restarted.root_dir = str(tmp_path)
    assert await restarted.reattach(job) is not None  # ended: from the exit code file
    await backend.stop(job)  # already ended: a no-op, after its own /proc check
    assert on_the_loop == []


async def test_a_wrapper_that_cannot_be_started_fails_the_job_with_the_reason(
    warm: tuple[LocalBackend, list[Job]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, jobs = warm
    missing = str(tmp_path / "no-such-python")
    monkeypatch.setattr(backend, "_runner_work", lambda *args: {"exec": [missing, "-I"]})
    (tmp_path / "ok.py").write_text("print('ok')\n")
    job = make_job("ok.py")
    rec = await launch(backend, jobs, job)
    assert rec.handle["warm"] is True
    outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
    assert outcome.state is JobState.FAILED and outcome.exit_code is None
    assert "without writing an exit code" in (outcome.error or "")
    log = (tmp_path / job.log_path).read_text()
    assert f"cannot start the job's wrapper {missing!r}" in log


def test_a_kernel_that_died_while_starting_is_started_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[list[str]] = []

    def flaky(args: list[str], **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError(warm_module.KERNEL_START_FAILED)
        raise SystemExit(0)

    assert warm_module.run_cli(flaky, ["in.ipynb", "out.ipynb"]) == 0
    assert calls == [["in.ipynb", "out.ipynb"]] * 2
    assert "starting it again" in capsys.readouterr().err

    def broken(args: list[str], **kwargs: Any) -> None:
        raise RuntimeError(warm_module.KERNEL_START_FAILED)

    assert warm_module.run_cli(broken, []) == 1  # only once more

    def failing_cell(args: list[str], **kwargs: Any) -> None:
        raise ValueError("a cell failed")

    assert warm_module.run_cli(failing_cell, []) == 1
    assert warm_module.run_cli(lambda **kw: None, []) == 0
    assert warm_module.run_cli(lambda **kw: sys.exit(3), []) == 3


# -- started before the event loop runs (the extension's load) ---------------------------


def _reaped(pid: int) -> bool:
    """True once `pid` is gone, zombie included (our child would stay one until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "X"
    except FileNotFoundError:
        return True


async def test_a_runner_spawned_at_load_is_adopted_runs_notebooks_and_is_closed(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(stop_grace_seconds=3.0, poll_seconds=0.2)
    backend.root_dir = str(tmp_path)
    backend.prepare()  # what the app does in initialize_settings, before the loop runs
    runner = backend._warm
    assert runner is not None and runner._early is not None
    early_pid = runner._early.pid
    jobs: list[Job] = []
    try:
        await backend.start()
        assert await runner.wait_started(), "the early runner was not adopted"
        assert runner.pid == early_pid  # the same process: no second start
        assert isinstance(runner._proc, warm_module._AdoptedProcess)
        job = notebook(tmp_path, "nb.ipynb", "print('from the early runner')")
        rec = await launch(backend, jobs, job)
        assert rec.handle["warm"] is True
        outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
        assert outcome.state is JobState.SUCCEEDED, (tmp_path / job.log_path).read_text()
    finally:
        await backend.close()
        kill_leftovers(jobs)
    assert _reaped(early_pid)


async def test_an_early_runner_that_died_is_replaced_and_one_never_adopted_is_ended(
    tmp_path: Path,
) -> None:
    died = LocalBackend()
    died.root_dir = str(tmp_path)
    died.prepare()
    assert died._warm is not None and died._warm._early is not None
    early = died._warm._early
    early.kill()
    await asyncio.to_thread(early.wait)
    try:
        await died.start()
        assert await died._warm.wait_started()
        assert died._warm.pid not in (None, early.pid)  # a new one, started the usual way
    finally:
        await died.close()

    # The server stopped before its loop ran: close() ends (and reaps) the early process.
    never = LocalBackend()
    never.root_dir = str(tmp_path)
    never.prepare()
    assert never._warm is not None and never._warm._early is not None
    pid = never._warm._early.pid
    await never.close()
    assert _reaped(pid)


async def test_an_adopted_runner_that_dies_falls_back_and_is_restarted(tmp_path: Path) -> None:
    backend = LocalBackend(stop_grace_seconds=3.0, poll_seconds=0.2)
    backend.root_dir = str(tmp_path)
    backend.prepare()
    jobs: list[Job] = []
    try:
        await backend.start()
        runner = backend._warm
        assert runner is not None and await runner.wait_started()
        assert runner.pid is not None
        adopted = runner.pid
        runner.restart_seconds = 0.0
        os.kill(adopted, signal.SIGKILL)

        async def dead() -> bool:
            return not runner.ready()

        await poll(dead, "the adopted runner to be seen dead")
        job = notebook(tmp_path, "nb.ipynb", "print('fell back')")
        rec = await launch(backend, jobs, job)
        assert rec.handle["warm"] is False
        outcome = await asyncio.wait_for(backend.wait(job), WAIT_SECONDS)
        assert outcome.state is JobState.SUCCEEDED, (tmp_path / job.log_path).read_text()
        assert await runner.wait_started() and runner.pid != adopted

        async def reaped() -> bool:
            return _reaped(adopted)

        await poll(reaped, "the dead runner to be reaped")
    finally:
        await backend.close()
        kill_leftovers(jobs)


def test_the_runner_gives_kernels_a_short_shutdown_wait() -> None:
    """ipykernel 7.4 can hang after a shutdown request; jupyter_client's default wait (5 s, SIGTERM
    at half) then delays the end of a finished notebook job. The runner's kernels wait less. In a
    fresh interpreter: the default is process-wide."""
    code = (
        "from jupyter_client.manager import AsyncKernelManager\n"
        "before = AsyncKernelManager().shutdown_wait_time\n"
        "from awsjobs_lab.backends.warm import shorten_kernel_shutdown_wait\n"
        "shorten_kernel_shutdown_wait()\n"
        "print(before, AsyncKernelManager().shutdown_wait_time)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert float(out[0]) > warm_module.KERNEL_SHUTDOWN_WAIT_SECONDS  # jupyter_client's own: 5 s
    assert float(out[1]) == warm_module.KERNEL_SHUTDOWN_WAIT_SECONDS
