"""The REST API through a real Jupyter server that requires authentication."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from awsjobs_lab.backends.base import Capabilities
from awsjobs_lab.errors import Forbidden
from awsjobs_lab.gpus import GpuNeed
from tests.server.helpers import assert_error, poll

API = ("awsjobs", "api")
ACTIVE = {"pending", "launching", "running", "stopping"}


async def wait_state(api: Any, job_id: str, *states: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        code, job = await api("GET", "jobs", job_id)
        assert code == 200, job
        return job if job["state"] in states else None

    job: dict[str, Any] = await poll(check, f"job {job_id} to be {'/'.join(states)}")
    return job


async def finished(api: Any, job_id: str) -> dict[str, Any]:
    return await wait_state(
        api, job_id, "succeeded", "failed", "stopped", "timed_out", "interrupted"
    )


# -- auth and shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "parts"),
    [
        ("GET", ("jobs",)),
        ("POST", ("jobs",)),
        ("GET", ("jobs", "0123456789abcdef")),
        ("DELETE", ("jobs", "0123456789abcdef")),
        ("POST", ("jobs", "0123456789abcdef", "stop")),
        ("GET", ("jobs", "0123456789abcdef", "log")),
        ("GET", ("config",)),
        ("GET", ("instance-types",)),
        ("GET", ("instances",)),
        ("POST", ("instances", "stop")),
    ],
)
async def test_every_endpoint_requires_auth(
    jp_fetch: Any, service: Any, method: str, parts: tuple[str, ...]
) -> None:
    response = await jp_fetch(
        *API,
        *parts,
        method=method,
        body=b"{}" if method == "POST" else None,
        headers={"Authorization": ""},
        raise_error=False,
    )
    assert response.code in (401, 403)


async def test_config(api: Any) -> None:
    code, config = await api("GET", "config")
    assert code == 200
    assert [b["id"] for b in config["backends"]] == ["local", "ec2"]
    assert config["backends"][0] == {
        "id": "local",
        "label": "This machine",
        "configured": True,
        "capabilities": {
            "spot": False,
            "instance_types": False,
            "instances": False,
            "hourly_price": False,
            "gpus": False,
            "schedules": False,
        },
    }
    assert config["backends"][1]["capabilities"] == {
        "spot": True,
        "instance_types": True,
        "instances": True,
        "hourly_price": True,
        "gpus": True,
        "schedules": True,
    }
    assert config["default_backend"] == "local"
    assert config["defaults"] == {
        "memory_gib": 4.0,
        "cpus": 1,
        "spot": False,
        "max_lifetime_minutes": 240,
        "max_allowed_lifetime_minutes": 10080,
    }
    assert config["aws_configured"] is False
    assert config["extensions"] == [".ipynb", ".py", ".R", ".Rmd", ".qmd", ".sh"]
    assert config["schedules"] == {"missed_run_grace_minutes": 60}  # the default


# -- hostile input ----------------------------------------------------------------------------


@pytest.fixture
def scripts(jp_root_dir: Path) -> Path:
    (jp_root_dir / "sub").mkdir()
    (jp_root_dir / "ok.py").write_text("print('ok')\n")
    (jp_root_dir / "notes.txt").write_text("x")
    (jp_root_dir.parent / "secret.py").write_text("print('outside')\n")
    os.symlink(jp_root_dir.parent / "secret.py", jp_root_dir / "link.py")
    return jp_root_dir


BAD_BODIES: list[tuple[Any, str]] = [
    ("{not json", "not valid JSON"),
    ("", "JSON object"),
    ("[1, 2]", "JSON object"),
    ('"ok.py"', "JSON object"),
    ('{"path": "ok.py", "memory_gib": NaN}', "not valid JSON"),
    ("\xff\xfe", "not valid JSON"),
    ("[" * 100000, "not valid JSON"),
    ({"path": 7}, "path:"),
    ({"path": "../secret.py"}, "path:"),
    ({"path": "/etc/passwd"}, "path: must be relative"),
    ({"path": "link.py"}, "outside the server root"),
    ({"path": "notes.txt"}, "path: cannot run '.txt'"),
    ({"path": "sub"}, "path:"),
    ({"path": "missing.py"}, "does not exist"),
    ({"path": "ok.py", "memory_gib": -1}, "memory_gib:"),
    ({"path": "ok.py", "memory_gib": 0}, "memory_gib:"),
    ({"path": "ok.py", "memory_gib": 10**9}, "memory_gib:"),
    ('{"path": "ok.py", "memory_gib": 1%s}' % ("0" * 400), "memory_gib:"),
    ('{"path": "ok.py", "memory_gib": 1e999}', "is too large"),
    ('{"path": "nb.ipynb", "parameters": {"x": -1e999}}', "is too large"),
    ('{"path": "ok.py", "cpus": 1%s}' % ("0" * 400), "cpus:"),
    ('{"path": "ok.py", "max_lifetime_minutes": 1%s}' % ("0" * 400), "max_lifetime_"),
    ('{"path": "ok.py", "cpus": 1%s}' % ("0" * 5000), "not valid JSON"),
    ({"path": "ok.py", "cpus": True}, "cpus:"),
    ({"path": "ok.py", "cpus": "2"}, "cpus:"),
    ({"path": "ok.py", "max_lifetime_minutes": 0}, "max_lifetime_minutes:"),
    ({"path": "ok.py", "max_lifetime_minutes": 10**12}, "max_lifetime_minutes:"),
    ({"path": "ok.py", "backend": "nope"}, "backend:"),
    ({"path": "ok.py", "spot": "true"}, "spot:"),
    ({"path": "ok.py", "env": {"BAD NAME": "x"}}, "env:"),
    ({"path": "ok.py", "parameters": {"a": 1}}, "parameters:"),
    ({"path": "ok.py", "instance_type": "../../x"}, "instance_type:"),
    ({"path": "ok.py", "log_path": "../x.log"}, "log_path:"),
    ({"path": "ok.py", "surprise": 1}, "unknown field(s): surprise"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_bad_launch_requests(api: Any, scripts: Path, body: Any, message: str) -> None:
    code, reply = await api("POST", "jobs", body=body)
    assert_error(code, reply, 400, message)
    assert reply["reason"] == "invalid_request"
    assert (await api("GET", "jobs"))[1]["jobs"] == []


@pytest.mark.parametrize(
    ("parts", "params", "message"),
    [
        (("jobs",), {"cursor": "garbage"}, "cursor:"),
        (("jobs",), {"limit": "many"}, "limit:"),
        (("jobs",), {"limit": "0"}, "limit:"),
        (("jobs",), {"limit": "1e3"}, "limit:"),
        (("jobs",), {"state": "running,bogus"}, "state:"),
        (("jobs", "0123456789abcdef", "log"), {"offset": "-1"}, "offset:"),
        (("jobs", "0123456789abcdef", "log"), {"offset": "x"}, "offset:"),
        (("jobs", "0123456789abcdef", "log"), {"limit": "0"}, "limit:"),
        (("instance-types",), {"memory_gib": "lots"}, "memory_gib:"),
        (("instance-types",), {"memory_gib": "inf"}, "memory_gib:"),
        (("instance-types",), {"spot": "maybe"}, "spot:"),
        (("instance-types",), {"cpus": "1.5"}, "cpus:"),
    ],
)
async def test_bad_queries(
    api: Any, parts: tuple[str, ...], params: dict[str, str], message: str
) -> None:
    code, reply = await api("GET", *parts, params=params)
    assert_error(code, reply, 400, message)


async def test_unknown_and_malformed_ids(api: Any, jp_fetch: Any) -> None:
    for method, parts in [
        ("GET", ("jobs", "0123456789abcdef")),
        ("DELETE", ("jobs", "0123456789abcdef")),
        ("POST", ("jobs", "0123456789abcdef", "stop")),
        ("GET", ("jobs", "0123456789abcdef", "log")),
    ]:
        code, reply = await api(method, *parts)
        assert_error(code, reply, 404, "no job 0123456789abcdef")
    for bad in ["../../api/contents", "0123", "0123456789ABCDEF", "0123456789abcdef0", "%00"]:
        response = await jp_fetch(*API, "jobs", bad, raise_error=False)
        assert response.code == 404


async def test_ec2_endpoints_when_not_configured(api: Any) -> None:
    for method, parts, body in [
        ("GET", ("instance-types",), None),
        ("GET", ("instances",), None),
        ("POST", ("instances", "stop"), {"instance_ids": ["i-0123456789abcdef0"]}),
    ]:
        code, reply = await api(method, *parts, body=body)
        assert_error(code, reply, 400, "EC2 backend is not configured")
        assert reply["reason"] == "not_configured"


class FakeEC2:
    """The EC2 backend's own endpoints, as the handlers call them."""

    id = "ec2"
    label = "AWS EC2"
    capabilities = Capabilities(spot=True, instance_types=True, instances=True, hourly_price=True)

    def __init__(self) -> None:
        self.previews: list[dict[str, Any]] = []
        self.terminated: list[str] = []

    def configuration_problem(self) -> None:
        return None

    def is_configured(self) -> bool:
        return True

    async def preview(self, **kwargs: Any) -> dict[str, Any]:
        self.previews.append(kwargs)
        choice = {"instance_type": "m7i.large", "vcpus": 2, "memory_gib": 8, "spot": kwargs["spot"]}
        return {"choice": choice, "candidates": [choice]}

    async def list_instances(self) -> list[dict[str, Any]]:
        return [{"instance_id": "i-0123456789abcdef0", "state": "running"}]

    async def terminate_instances(self, ids: list[str]) -> list[str]:
        if "i-00000000000000000" in ids:
            raise Forbidden("i-00000000000000000 was not started by awsjobs-lab")
        self.terminated += ids
        return ids


async def test_ec2_endpoints(api: Any, service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEC2()
    monkeypatch.setitem(service.backends, "ec2", fake)
    code, reply = await api(
        "GET", "instance-types", params={"memory_gib": "6", "cpus": "2", "spot": "true"}
    )
    assert code == 200 and reply["choice"]["instance_type"] == "m7i.large"
    assert fake.previews == [
        {"memory_gib": 6.0, "cpus": 2, "spot": True, "instance_type": None, "gpus": GpuNeed()}
    ]
    code, reply = await api("GET", "instance-types")
    assert fake.previews[-1] == {
        "memory_gib": 4.0,
        "cpus": 1,
        "spot": False,
        "instance_type": None,
        "gpus": GpuNeed(),
    }
    params = {"gpus": "2", "gpu_memory_gib": "20", "gpu_model": "L4"}
    code, reply = await api("GET", "instance-types", params=params)
    assert code == 200 and fake.previews[-1]["gpus"] == GpuNeed(2, 20.0, "L4")
    code, reply = await api("GET", "instance-types", params={"gpus": "17"})
    assert_error(code, reply, 400, "gpus: must be a whole number from 0 to 16")
    code, reply = await api("GET", "instance-types", params={"gpu_model": "A10G;x"})
    assert_error(code, reply, 400, "gpu_model: must be a GPU name")
    code, reply = await api("GET", "instances")
    assert code == 200 and reply["instances"][0]["instance_id"] == "i-0123456789abcdef0"
    ids = ["i-0123456789abcdef0"]
    code, reply = await api("POST", "instances", "stop", body={"instance_ids": ids})
    assert (code, reply) == (200, {"terminated": ids})
    code, reply = await api(
        "POST",
        "instances",
        "stop",
        body={"instance_ids": ["i-0123456789abcdef0", "i-00000000000000000"]},
    )
    assert_error(code, reply, 403, "not started by awsjobs-lab")
    for body in [{"instance_ids": "i-1"}, {"ids": []}, [], {"instance_ids": [1]}]:
        code, reply = await api("POST", "instances", "stop", body=body)
        assert_error(code, reply, 400, "instance_ids")
    code, reply = await api("POST", "instances", "stop", body={"instance_ids": ["i-; reboot"]})
    assert_error(code, reply, 400, "is not an EC2 instance id")
    assert fake.terminated == ids


# -- real local jobs, end to end --------------------------------------------------------------


async def test_python_job_end_to_end(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "work").mkdir()
    (jp_root_dir / "work" / "count.py").write_text(
        "import os, time\n"
        "for i in range(3):\n"
        "    print(f'line {i} é', flush=True)\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.05)\n"
        "print('done', os.environ['WHO'])\n"
    )
    code, job = await api(
        "POST", "jobs", body={"path": "work/count.py", "env": {"WHO": "me"}, "cpus": 2}
    )
    assert code == 201, job
    assert job["state"] == "pending" and job["cpus"] == 2
    assert job["log_path"] == f"work/count.{job['id']}.log"

    # Read the log incrementally, from offsets, while the job runs.
    text, offset = "", 0

    async def three_lines() -> bool:
        nonlocal text, offset
        code, chunk = await api("GET", "jobs", job["id"], "log", params={"offset": str(offset)})
        assert code == 200, chunk
        assert chunk["offset"] == offset and not chunk["complete"]
        text += chunk["content"]
        offset = chunk["next_offset"]
        return text.count("\n") >= 3

    await poll(three_lines, "three log lines")
    assert text == "line 0 é\nline 1 é\nline 2 é\n"
    running = await wait_state(api, job["id"], "running")
    assert running["started_at"] and running["command"][1:] == ["count.py"]
    code, page = await api("GET", "jobs", params={"state": "running,pending"})
    assert [j["id"] for j in page["jobs"]] == [job["id"]]
    code, reply = await api("DELETE", "jobs", job["id"])
    assert_error(code, reply, 409, "stop it before deleting it")

    (jp_root_dir / "work" / "go").write_text("")
    done = await finished(api, job["id"])
    assert done["state"] == "succeeded" and done["exit_code"] == 0, done
    moves = [t["state"] for t in done["history"] if "phase" not in t]  # phase entries apart
    assert moves == ["pending", "launching", "running", "succeeded"]
    assert done["elapsed_seconds"] is not None and done["cost_so_far"] is None

    code, chunk = await api(
        "GET", "jobs", job["id"], "log", params={"offset": str(offset), "limit": "2"}
    )
    assert (chunk["content"], chunk["next_offset"], chunk["eof"]) == ("do", offset + 2, False)
    code, chunk = await api("GET", "jobs", job["id"], "log", params={"offset": str(offset + 2)})
    assert chunk["content"] == "ne me\n" and chunk["eof"] and chunk["complete"]

    code, _ = await api("DELETE", "jobs", job["id"])
    assert code == 204
    code, reply = await api("GET", "jobs", job["id"])
    assert code == 404


async def test_failing_script(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "fail.sh").write_text("echo about to fail\nexit 7\n")
    code, job = await api("POST", "jobs", body={"path": "fail.sh", "log_path": "fail.out"})
    assert code == 201
    done = await finished(api, job["id"])
    assert (done["state"], done["exit_code"], done["error"]) == ("failed", 7, "exited with code 7")
    assert (jp_root_dir / "fail.out").read_text() == "about to fail\n"


async def test_log_replaced_by_a_symlink_out_of_root(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "q.py").write_text("print('q')\n")
    code, job = await api("POST", "jobs", body={"path": "q.py"})
    done = await finished(api, job["id"])
    log = jp_root_dir / done["log_path"]
    log.unlink()
    (jp_root_dir.parent / "private.txt").write_text("secret")
    os.symlink(jp_root_dir.parent / "private.txt", log)
    code, reply = await api("GET", "jobs", job["id"], "log")
    assert_error(code, reply, 400, "log_path:", "is outside the server root")


async def test_hostile_name_runs_as_a_file(api: Any, jp_root_dir: Path) -> None:
    name = "a;rm -rf ~.py"
    (jp_root_dir / name).write_text("print('harmless')\n")
    code, job = await api("POST", "jobs", body={"path": name})
    assert code == 201
    done = await finished(api, job["id"])
    assert done["state"] == "succeeded", done
    assert (jp_root_dir / done["log_path"]).read_text() == "harmless\n"


async def test_notebook_runs_with_papermill(api: Any, jp_root_dir: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("n = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('n squared is', n * n)")]
    (jp_root_dir / "nbs").mkdir()
    nbformat.write(nb, jp_root_dir / "nbs" / "square.ipynb")

    code, job = await api(
        "POST", "jobs", body={"path": "nbs/square.ipynb", "parameters": {"n": 12}}
    )
    assert code == 201, job
    assert job["output_path"] == f"nbs/square.{job['id']}.ipynb"
    done = await finished(api, job["id"])
    log = (jp_root_dir / done["log_path"]).read_text()
    assert done["state"] == "succeeded", log
    out = nbformat.read(jp_root_dir / done["output_path"], as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n = 12" in injected[0].source
    outputs = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "n squared is 144" in outputs


async def test_stop_a_long_job_leaves_no_process(api: Any, jp_root_dir: Path) -> None:
    from awsjobs_lab.backends.local import group_members

    (jp_root_dir / "long.py").write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    code, job = await api("POST", "jobs", body={"path": "long.py"})
    running = await wait_state(api, job["id"], "running")

    async def printed() -> bool:
        return "started" in (jp_root_dir / running["log_path"]).read_text()

    await poll(printed, "the job to start")
    pgid = running["handle"]["pgid"]
    assert len(group_members(pgid)) == 3
    code, stopping = await api("POST", "jobs", job["id"], "stop")
    assert code == 202 and stopping["state"] in ("stopping", "stopped")
    assert stopping["stop_requested"] is True
    done = await finished(api, job["id"])
    assert done["state"] == "stopped", done
    assert group_members(pgid) == []
    code, again = await api("POST", "jobs", job["id"], "stop")
    assert code == 202 and again["state"] == "stopped"


async def test_list_pages_over_the_api(api: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "quick.py").write_text("pass\n")
    ids = []
    for _ in range(5):
        code, job = await api("POST", "jobs", body={"path": "quick.py"})
        ids.append(job["id"])
    for job_id in ids:
        await finished(api, job_id)
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        code, page = await api("GET", "jobs", params=params)
        assert code == 200 and len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    code, page = await api("GET", "jobs", params={"state": "succeeded"})
    assert len(page["jobs"]) == 5


class TestLifetime:
    """A job past its max lifetime is stopped and marked timed_out (a minute is 0.5 s here)."""

    @pytest.fixture
    def awsjobs_config(self) -> dict[str, Any]:
        return {"lifetime_unit_seconds": 0.5}

    async def test_times_out(self, api: Any, jp_root_dir: Path) -> None:
        from awsjobs_lab.backends.local import group_members

        (jp_root_dir / "forever.py").write_text("import time\ntime.sleep(600)\n")
        code, job = await api(
            "POST", "jobs", body={"path": "forever.py", "max_lifetime_minutes": 1}
        )
        assert code == 201
        done = await finished(api, job["id"])
        assert done["state"] == "timed_out", done
        assert done["error"] == "reached its max lifetime of 1 minute"
        assert group_members(done["handle"]["pgid"]) == []


async def test_unauthenticated_body_has_no_details(jp_fetch: Any, service: Any) -> None:
    response = await jp_fetch(*API, "jobs", headers={"Authorization": ""}, raise_error=False)
    assert response.code == 403
    body = json.loads(response.body)
    assert "jobs" not in body
