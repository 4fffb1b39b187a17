"""Bad input and bad days get clear answers, never a bare 500 nor a hang: hostile paths, cursors
and parameter names, FIFOs and links in place of files, malformed URLs, and a job store that
cannot be written."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab import safeopen
from awsjobs_lab.backends.local import LocalBackend
from awsjobs_lab.errors import StoreUnavailable
from awsjobs_lab.store import JobStore
from tests.server.helpers import assert_error, kill_leftovers, make_job, poll

API = ("awsjobs", "api")


@pytest.fixture
def files(jp_root_dir: Path) -> Path:
    (jp_root_dir / "ok.py").write_text("print('ok')\n")
    (jp_root_dir / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4}')
    (jp_root_dir / "locked").mkdir()
    (jp_root_dir / "locked" / "x.py").write_text("print('x')\n")
    os.mkfifo(jp_root_dir / "pipe.log")
    return jp_root_dir


@contextlib.contextmanager
def unblocking(fifo: Path) -> Iterator[None]:
    """If something opened `fifo` and is blocked on it (the bug this guards against), open the
    other end at the end so the blocked thread, and the test, can finish."""
    try:
        yield
    finally:
        for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, flags))


async def wait_done(api: Any, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = (await api("GET", "jobs", job_id))[1]
        return job if job["state"] in ("succeeded", "failed", "stopped") else None

    job: dict[str, Any] = await poll(check, f"job {job_id} to end")
    return job


# -- launch requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"path": "a" * 5000 + ".py"}, "path: must be at most 4095 bytes"),
        ({"path": "d/" * 2100 + "x.py"}, "path: must be at most 4095 bytes"),
        ({"path": "a" * 300 + ".py"}, "path: a name in it is longer than 255 bytes"),
        ('{"path": "\\ud800.py"}', "path: must be valid Unicode text"),
        ('{"path": "ok.py", "log_path": "\\udcff.log"}', "log_path: must be valid Unicode"),
        ({"path": "ok.py", "log_path": "l" * 5000}, "log_path: must be at most 4095 bytes"),
        ('{"path": "ok.py", "env": {"A": "\\ud800"}}', "env: the value of A must be valid"),
        ({"path": "ok.py", "log_path": "pipe.log"}, "log_path: 'pipe.log' is not a regular"),
        ({"path": "pipe.log"}, "path: cannot run '.log'"),
        ({"path": "nb.ipynb", "parameters": {"class": 1}}, "'class' is a Python keyword"),
        ({"path": "nb.ipynb", "parameters": {"None": 1}}, "'None' is a Python keyword"),
    ],
)
async def test_hostile_launch_requests_are_refused(
    api: Any, files: Path, body: Any, message: str
) -> None:
    with unblocking(files / "pipe.log"):
        code, reply = await asyncio.wait_for(api("POST", "jobs", body=body), 60)
        assert_error(code, reply, 400, message)
        assert (await api("GET", "jobs"))[1]["jobs"] == []


async def test_an_unreadable_folder_is_a_400(
    api: Any, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests run as root, whom permissions do not stop: the denial is simulated.
    real_stat = Path.stat

    def stat(self: Path, **kwargs: Any) -> os.stat_result:
        if "locked" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    code, reply = await api("POST", "jobs", body={"path": "locked/x.py"})
    assert_error(code, reply, 400, "path: cannot read 'locked/x.py': Permission denied")
    code, reply = await api("POST", "jobs", body={"path": "ok.py", "log_path": "locked/o.log"})
    assert_error(code, reply, 400, "log_path: cannot read 'locked/o.log': Permission denied")


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"[" * 5000).decode(),  # too deep for the JSON parser
        base64.urlsafe_b64encode(b"[" * 120).decode(),
        base64.urlsafe_b64encode(b'[1e999, "x"]').decode(),
        "x" * 5000,
    ],
)
async def test_a_malformed_cursor_is_a_400(api: Any, cursor: str) -> None:
    code, reply = await api("GET", "jobs", params={"cursor": cursor})
    assert_error(code, reply, 400, "cursor: not a cursor returned by this server")


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "jobs/XYZ",
        "jobs/XYZ/log",
        "jobs/0123456789ABCDEF/stop",
        "jobs/../x",
        "jobs/%2e%2e%2fx",
        "nothing-here",
    ],
)
async def test_a_malformed_url_is_the_json_404(jp_fetch: Any, service: Any, path: str) -> None:
    for method, body in (("GET", None), ("POST", b"{}"), ("DELETE", None)):
        response = await jp_fetch(*API, path, method=method, body=body, raise_error=False)
        assert response.code == 404
        assert response.headers["Content-Type"].startswith("application/json")
        reply = json.loads(response.body)
        assert_error(404, reply, 404, "no ")
        assert reply["reason"] == "not_found"


async def test_a_malformed_url_needs_authentication(jp_fetch: Any, service: Any) -> None:
    response = await jp_fetch(*API, "jobs/XYZ", raise_error=False, headers={"Authorization": ""})
    assert response.code in (401, 403)


# -- FIFOs, links and unreadable logs ---------------------------------------------------------


async def test_a_log_replaced_by_a_fifo_is_a_400_without_blocking(api: Any, files: Path) -> None:
    code, job = await api("POST", "jobs", body={"path": "ok.py", "log_path": "ok.out"})
    assert code == 201, job
    await wait_done(api, job["id"])
    (files / "ok.out").unlink()
    os.mkfifo(files / "ok.out")
    with unblocking(files / "ok.out"):
        code, reply = await asyncio.wait_for(api("GET", "jobs", job["id"], "log"), 60)
    assert_error(code, reply, 400, "log_path: 'ok.out' is not a regular file")


async def test_an_unreadable_log_is_a_400(
    api: Any, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, job = await api("POST", "jobs", body={"path": "ok.py", "log_path": "ok.out"})
    await wait_done(api, job["id"])
    real_open = os.open

    def denied(path: Any, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("ok.out"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(safeopen.os, "open", denied)
    code, reply = await api("GET", "jobs", job["id"], "log")
    assert_error(code, reply, 400, "log_path: cannot read 'ok.out': Permission denied")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(stop_grace_seconds=2.0, warm_notebook_runner=False)
    b.root_dir = str(tmp_path / "root")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "s.py").write_text("open('ran', 'w').close()\n")
    (tmp_path / "outside.py").write_text("open('ran', 'w').close()\n")
    (tmp_path / "outside.log").write_text("private\n")
    yield b


async def refused_launch(backend: LocalBackend, root: Path, *, log_path: str, words: str) -> None:
    job = make_job("s.py", log_path=log_path)
    try:
        with pytest.raises(Exception, match=words):
            await asyncio.wait_for(backend.launch(job, _no_record), 60)
    finally:
        kill_leftovers([job])
    assert not (root / "ran").exists()


async def _no_record(handle: Any = None, **fields: Any) -> None:
    return None


async def test_a_script_swapped_for_a_link_is_not_run(
    backend: LocalBackend, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "s.py").unlink()
    os.symlink(tmp_path / "outside.py", root / "s.py")  # after the job was accepted
    await refused_launch(backend, root, log_path="s.log", words="path: 's.py' is outside")
    assert not (tmp_path / "ran").exists()


async def test_a_log_swapped_for_a_link_is_not_written(
    backend: LocalBackend, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir()
    os.symlink(tmp_path / "outside.log", root / "s.log")
    await refused_launch(backend, root, log_path="s.log", words="log_path: 's.log' is outside")
    os.symlink(root / "sub", root / "moved")  # a folder of the log swapped for a link
    await refused_launch(backend, root, log_path="moved/s.log", words="replaced by a link")
    assert (tmp_path / "outside.log").read_text() == "private\n"


async def test_a_log_swapped_for_a_fifo_fails_the_launch_at_once(
    backend: LocalBackend, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    os.mkfifo(root / "s.log")
    with unblocking(root / "s.log"):
        await refused_launch(backend, root, log_path="s.log", words="is not a regular file")


# -- a job store that cannot be opened or written ---------------------------------------------


class FullDisk(JobStore):
    def _write(self, fn: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")


async def test_a_full_disk_is_a_503_naming_the_store(
    api: Any, files: Path, service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.store, "_write", FullDisk._write.__get__(service.store))
    code, reply = await api("POST", "jobs", body={"path": "ok.py"})
    assert_error(code, reply, 503, str(service.store.path), "database or disk is full")
    assert "free disk space" in reply["message"] and reply["reason"] == "unavailable"
    with pytest.raises(StoreUnavailable):
        await service.store.update("0123456789abcdef", error="x")
