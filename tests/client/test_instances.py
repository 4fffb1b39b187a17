"""`list_job_instances` / `stop_instances` and `awsjobs instances` / `stop-instances`, through a
real Jupyter server whose EC2 backend talks to moto (server mode, in this process).

Instances are seeded straight into moto with the tags the EC2 backend uses: ours
(awsjobs:managed=true, our owner), another owner's, and a foreign one without tags. The rule
under test: only this tool's instances are listed and stopped; a request naming any other id is
refused (403) and nothing is touched.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from client_support import ServerProc, free_port, start_server, stop_server

from awsjobs_lab import client
from awsjobs_lab.client import Forbidden


@pytest.fixture(scope="module")
def ec2_server(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A Jupyter server with the EC2 backend configured against moto."""
    server = start_server(
        tmp_path_factory.mktemp("jpserver-ec2"),
        extra_args=[
            f"--EC2Backend.endpoint_url={moto_server}",
            # Nothing answers there: a price lookup fails at once instead of waiting on moto.
            f"--EC2Backend.pricing_endpoint_url=http://127.0.0.1:{free_port()}/",
            "--EC2Backend.region=us-east-1",
            "--EC2Backend.image_id=ami-0123456789abcdef0",
            "--EC2Backend.subnet_ids=subnet-00000000",
            "--EC2Backend.efs_file_system_id=fs-00000000",
            "--EC2Backend.instance_profile_name=awsjobs-worker",
        ],
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def server(
    ec2_server: ServerProc, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> ServerProc:
    monkeypatch.setenv("JUPYTER_SERVER_URL", ec2_server.url)
    monkeypatch.setenv("JUPYTER_TOKEN", ec2_server.token)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(ec2_server.runtime_dir))
    monkeypatch.chdir(ec2_server.root)
    return ec2_server


async def _launch(ec2: Any, tags: dict[str, str], count: int = 1) -> list[str]:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    resp = await ec2.run_instances(
        ImageId="ami-0123456789abcdef0",
        InstanceType="m5.large",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=spec if tags else [],
    )
    return [i["InstanceId"] for i in resp["Instances"]]


async def _states(ec2: Any, ids: list[str]) -> dict[str, str]:
    resp = await ec2.describe_instances(InstanceIds=ids)
    return {
        i["InstanceId"]: i["State"]["Name"] for r in resp["Reservations"] for i in r["Instances"]
    }


@pytest.fixture
async def seeded(aws: Any) -> dict[str, list[str]]:
    ec2 = await aws("ec2")
    me = getpass.getuser()
    return {
        "ours": await _launch(
            ec2, {"awsjobs:managed": "true", "awsjobs:owner": me, "awsjobs:job-id": "a" * 16}, 2
        ),
        "builder": await _launch(
            ec2, {"awsjobs:managed": "true", "awsjobs:owner": me, "awsjobs:role": "image-builder"}
        ),
        "other_owner": await _launch(ec2, {"awsjobs:managed": "true", "awsjobs:owner": "zed"}),
        "foreign": await _launch(ec2, {}),
    }


async def test_list_only_our_instances(server: ServerProc, seeded: dict[str, list[str]]) -> None:
    rows = client.list_job_instances()
    listed = {r["instance_id"] for r in rows}
    assert listed == {*seeded["ours"], *seeded["builder"]}
    by_id = {r["instance_id"]: r for r in rows}
    assert by_id[seeded["ours"][0]]["job_id"] == "a" * 16
    assert by_id[seeded["ours"][0]]["instance_type"] == "m5.large"


async def test_stop_instances_ours(
    server: ServerProc, seeded: dict[str, list[str]], aws: Any
) -> None:
    ec2 = await aws("ec2")
    target = seeded["ours"][0]
    assert client.stop_instances([target]) == [target]
    states = await _states(ec2, [target, seeded["ours"][1]])
    assert states[target] in ("shutting-down", "terminated")
    assert states[seeded["ours"][1]] == "running"
    assert target not in {r["instance_id"] for r in client.list_job_instances()}


@pytest.mark.parametrize("kind", ["foreign", "other_owner"])
async def test_foreign_id_refused_and_nothing_touched(
    server: ServerProc, seeded: dict[str, list[str]], aws: Any, kind: str
) -> None:
    ec2 = await aws("ec2")
    ids = [seeded["ours"][0], seeded[kind][0]]
    with pytest.raises(Forbidden) as info:
        client.stop_instances(ids)
    assert info.value.status == 403
    assert seeded[kind][0] in info.value.message
    assert set((await _states(ec2, ids)).values()) == {"running"}


def _awsjobs(server: ServerProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awsjobs_lab.cli", *args],
        env=server.env,
        cwd=str(server.root),
        capture_output=True,
        text=True,
        timeout=240,
    )


async def test_cli_instances_and_stop_instances(
    server: ServerProc, seeded: dict[str, list[str]], aws: Any
) -> None:
    ec2 = await aws("ec2")
    table = _awsjobs(server, "instances")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["INSTANCE", "ID", "JOB"]
    assert {r.split()[0] for r in rows} == {*seeded["ours"], *seeded["builder"]}

    listed = json.loads(_awsjobs(server, "instances", "--json").stdout)
    assert {r["instance_id"] for r in listed} == {*seeded["ours"], *seeded["builder"]}

    refused = _awsjobs(server, "stop-instances", seeded["ours"][0], seeded["foreign"][0])
    assert refused.returncode == 3
    assert "HTTP 403" in refused.stderr and "Traceback" not in refused.stderr
    assert (await _states(ec2, [seeded["ours"][0]]))[seeded["ours"][0]] == "running"

    done = _awsjobs(server, "stop-instances", *seeded["builder"], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"terminated": seeded["builder"]}


def test_no_instances(server: ServerProc) -> None:
    assert client.list_job_instances() == []
    result = _awsjobs(server, "instances")
    assert result.returncode == 0
    assert "No running instances" in result.stderr
