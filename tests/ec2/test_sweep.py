"""The sweep (`aws.sweep`, `awsjobs sweep`, and the server's periodic sweep): this owner's
instances past `awsjobs:expires-at` plus a grace are terminated and confirmed; nothing else is
touched. Instances are seeded straight into the simulated AWS with the tags this tool writes.
The sweep also deletes this owner's launch templates left by a crash (older than a launch
needs them); moto serves DescribeLaunchTemplates with tag filters and DeleteLaunchTemplate."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from ec2_helpers import Recorder, make_job

from awsjobs_lab.aws import sweep, tags
from awsjobs_lab.aws.sweep import SweepReport, sweep_instances, sweep_launch_templates
from awsjobs_lab.cli import main
from tests.awssim.server import SimulatedAWS

OWNER = "tester"
HOUR = 3600.0


async def _seed(ec2: Any, **found: str) -> str:
    """One instance with these tags (awsjobs:managed and our owner unless told otherwise)."""
    values = {tags.MANAGED: tags.TRUE, tags.OWNER: OWNER, tags.ROLE: tags.ROLE_JOB, **found}
    values = {k: v for k, v in values.items() if v}
    resp = await ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="m7i.large",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags.tag_list(values)}],
    )
    return str(resp["Instances"][0]["InstanceId"])


def _at(offset: float) -> str:
    return tags.expires_at_value(time.time() + offset)


async def _states(ec2: Any) -> dict[str, str]:
    resp = await ec2.describe_instances()
    return {
        i["InstanceId"]: i["State"]["Name"] for r in resp["Reservations"] for i in r["Instances"]
    }


@pytest.fixture
async def seeded(sim: SimulatedAWS, aws: Any) -> dict[str, str]:
    """Name → instance id: which of them a sweep with a 10-minute grace must end."""
    ec2 = await aws("ec2")
    return {
        "expired": await _seed(ec2, **{tags.EXPIRES_AT: _at(-HOUR), tags.JOB_ID: "j1"}),
        "in_grace": await _seed(ec2, **{tags.EXPIRES_AT: _at(-60), tags.JOB_ID: "j2"}),
        "future": await _seed(ec2, **{tags.EXPIRES_AT: _at(HOUR), tags.JOB_ID: "j3"}),
        "builder": await _seed(
            ec2, **{tags.ROLE: tags.ROLE_IMAGE_BUILDER, tags.EXPIRES_AT: _at(-HOUR)}
        ),
        "untagged": await _seed(ec2, **{tags.JOB_ID: "j4"}),
        "other_owner": await _seed(ec2, **{tags.OWNER: "someone", tags.EXPIRES_AT: _at(-HOUR)}),
        "foreign": await _seed(ec2, **{tags.MANAGED: "", tags.EXPIRES_AT: _at(-HOUR)}),
    }


SWEPT = {"expired", "builder"}


async def test_sweep_ends_only_our_instances_past_their_deadline(seeded, aws):
    ec2 = await aws("ec2")
    report = await sweep_instances(ec2, owner=OWNER, grace_seconds=600, confirm_delay=0.05)
    assert report.ok
    assert sorted(report.terminated) == sorted(seeded[n] for n in SWEPT)
    assert {e.instance_id: e.role for e in report.expired} == {
        seeded["expired"]: "job",
        seeded["builder"]: "image-builder",
    }
    assert report.without_deadline == [seeded["untagged"]]
    states = await _states(ec2)
    for name, iid in seeded.items():
        ended = states[iid] in ("shutting-down", "terminated")
        assert ended == (name in SWEPT), name


async def test_dry_run_only_lists(seeded, aws):
    ec2 = await aws("ec2")
    report = await sweep_instances(ec2, owner=OWNER, grace_seconds=600, dry_run=True)
    assert sorted(e.instance_id for e in report.expired) == sorted(seeded[n] for n in SWEPT)
    assert report.terminated == [] and report.ok
    assert set((await _states(ec2)).values()) == {"running"}


async def test_a_builder_without_a_deadline_tag_gets_one_from_its_launch(sim, aws):
    ec2 = await aws("ec2")
    builder = await _seed(ec2, **{tags.ROLE: tags.ROLE_IMAGE_BUILDER})
    report = await sweep_instances(ec2, owner=OWNER, grace_seconds=0, dry_run=True)
    assert report.expired == [] and report.without_deadline == []
    later = time.time() + 5 * HOUR
    report = await sweep_instances(ec2, owner=OWNER, grace_seconds=0, dry_run=True, now=later)
    assert [e.instance_id for e in report.expired] == [builder]


# -- the command ---------------------------------------------------------------------------------


def _sweep_cli(sim: SimulatedAWS, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main(
        [
            "sweep",
            "--endpoint-url",
            sim.endpoint_url,
            "--region",
            "us-east-1",
            "--owner",
            OWNER,
            "--json",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, json.loads(out), err


async def test_cli_sweep_and_dry_run(seeded, sim, aws, capsys, no_jupyter_config):
    code, report, _ = await asyncio.to_thread(_sweep_cli, sim, capsys, "--dry-run")
    assert code == 0 and report["dry_run"] and report["terminated"] == []
    assert sorted(e["instance_id"] for e in report["expired"]) == sorted(seeded[n] for n in SWEPT)

    code, report, _ = await asyncio.to_thread(_sweep_cli, sim, capsys)
    assert code == 0 and report["ok"]
    assert sorted(report["terminated"]) == sorted(seeded[n] for n in SWEPT)
    ended = {i for i, s in (await _states(await aws("ec2"))).items() if s != "running"}
    assert ended == {seeded[n] for n in SWEPT}


async def test_cli_sweep_fails_when_a_termination_is_not_confirmed(
    seeded, sim, capsys, faults, no_jupyter_config
):
    faults.always("ec2", "TerminateInstances", "UnauthorizedOperation")
    code, report, _ = await asyncio.to_thread(_sweep_cli, sim, capsys)
    assert code != 0
    assert not report["ok"]
    assert sorted(report["unconfirmed"]) == sorted(seeded[n] for n in SWEPT)
    assert "UnauthorizedOperation" in report["unconfirmed"][seeded["expired"]]


async def test_cli_sweep_prints_what_it_did(seeded, sim, capsys, no_jupyter_config):
    code = await asyncio.to_thread(
        main,
        ["sweep", "--endpoint-url", sim.endpoint_url, "--region", "us-east-1", "--owner", OWNER],
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    for name in SWEPT:
        assert f"terminated {seeded[name]}" in out
    assert seeded["future"] not in out


async def test_cli_sweep_reads_the_servers_settings(seeded, sim, capsys, tmp_path, monkeypatch):
    # c.EC2Backend.* in jupyter_server_config: the same owner, region and endpoint as the
    # server, and the grace; flags would override them.
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    settings = {
        "endpoint_url": sim.endpoint_url,
        "region": "us-east-1",
        "owner": OWNER,
        "sweep_grace_seconds": 30.0,  # `in_grace` expired 60 s ago: past this grace
    }
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({"EC2Backend": settings}))
    _only_config_dir(monkeypatch, config_dir)
    code = await asyncio.to_thread(main, ["sweep", "--dry-run", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    expired = {e["instance_id"] for e in json.loads(out)["expired"]}
    assert expired == {seeded[n] for n in (*SWEPT, "in_grace")}


@pytest.fixture
def no_jupyter_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No jupyter_server_config of this machine's user leaks into a CLI test."""
    empty = tmp_path / "no-jupyter-config"
    empty.mkdir()
    _only_config_dir(monkeypatch, empty)


def _only_config_dir(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", "")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "0")
    monkeypatch.setattr("jupyter_core.paths.SYSTEM_CONFIG_PATH", [])
    monkeypatch.setattr("jupyter_core.paths.ENV_CONFIG_PATH", [])


# -- the server's sweep and its orphan report -----------------------------------------------------


async def test_the_server_sweeps_at_start_and_periodically(seeded, make_backend, aws):
    backend = make_backend(owner=OWNER, sweep_interval_seconds=0.05, warm_prices_on_start=False)
    ec2 = await aws("ec2")
    report = await backend.reconcile([])  # at start, with the orphan report
    assert sorted(r["instance_id"] for r in report["swept"]) == sorted(seeded[n] for n in SWEPT)

    late = await _seed(ec2, **{tags.EXPIRES_AT: _at(-HOUR), tags.JOB_ID: "j5"})
    await backend.start()
    try:
        for _ in range(200):
            if (await _states(ec2))[late] != "running":
                break
            await asyncio.sleep(0.05)
        assert (await _states(ec2))[late] in ("shutting-down", "terminated")
    finally:
        await backend.close()
    # close() cancelled and awaited the periodic sweep.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "awsjobs-ec2-sweep"]


async def test_image_builders_past_their_deadline_are_orphans(sim, make_backend, aws):
    backend = make_backend(owner=OWNER)
    ec2 = await aws("ec2")
    expired = time.time() - 60  # (compared below with this, not with a later clock)
    late = await _seed(
        ec2,
        **{tags.ROLE: tags.ROLE_IMAGE_BUILDER, tags.EXPIRES_AT: tags.expires_at_value(expired)},
    )
    await _seed(ec2, **{tags.ROLE: tags.ROLE_IMAGE_BUILDER, tags.EXPIRES_AT: _at(HOUR)})
    orphans = await backend.find_orphans(set())
    assert [o["instance_id"] for o in orphans] == [late]
    assert orphans[0]["role"] == "image-builder"
    rows = {r["instance_id"]: r for r in await backend.list_instances()}
    assert rows[late]["expires_at"] == pytest.approx(expired, abs=5)


# -- launch templates left by a crash ---------------------------------------------------------


async def _template(ec2: Any, name: str, **found: str) -> str:
    """A launch template tagged as this tool tags a job's (our owner unless told otherwise)."""
    values = {tags.MANAGED: tags.TRUE, tags.OWNER: OWNER, tags.JOB_ID: name, **found}
    values = {k: v for k, v in values.items() if v}
    made = await ec2.create_launch_template(
        LaunchTemplateName=f"awsjobs-{name}",
        LaunchTemplateData={"ImageId": "ami-12c6146b"},
        TagSpecifications=tags.tag_specifications(values, ("launch-template",)),
    )
    return str(made["LaunchTemplate"]["LaunchTemplateId"])


async def _template_ids(ec2: Any) -> set[str]:
    found = await ec2.describe_launch_templates()
    return {t["LaunchTemplateId"] for t in found["LaunchTemplates"]}


async def test_old_launch_templates_of_ours_are_deleted(sim, aws):
    ec2 = await aws("ec2")
    ours = await _template(ec2, "ours")
    others = {
        await _template(ec2, "other-owner", **{tags.OWNER: "someone"}),
        await _template(ec2, "foreign", **{tags.MANAGED: ""}),
    }
    young = SweepReport(dry_run=False)
    await sweep_launch_templates(ec2, young, owner=OWNER)  # just made: a launch may use it
    assert young.launch_templates == [] and not young.launch_template_errors
    later = time.time() + sweep.TEMPLATE_MAX_AGE_SECONDS + 60
    dry = SweepReport(dry_run=True)
    await sweep_launch_templates(ec2, dry, owner=OWNER, now=later)
    assert dry.launch_templates == [ours] and await _template_ids(ec2) == {ours, *others}
    report = SweepReport(dry_run=False)
    await sweep_launch_templates(ec2, report, owner=OWNER, now=later)
    assert report.launch_templates == [ours] and not report.launch_template_errors
    assert await _template_ids(ec2) == others


async def test_a_template_a_crash_left_is_swept_by_the_server_and_the_cli(
    sim, make_backend, aws, root, faults, capsys, monkeypatch, no_jupyter_config
):
    # The server "killed" between CreateLaunchTemplate and its deletion: the deletion fails.
    backend = make_backend(owner=OWNER)
    faults.always("ec2", "DeleteLaunchTemplate", "UnauthorizedOperation")
    job = make_job(root)
    await backend.launch(job, Recorder(job))
    ec2 = await aws("ec2")
    (left,) = await _template_ids(ec2)
    other = await _template(ec2, "other-owner", **{tags.OWNER: "someone"})
    monkeypatch.setattr(sweep, "TEMPLATE_MAX_AGE_SECONDS", 0.0)  # as if minutes had passed

    failing = (
        await backend.inventory.sweep()
    )  # the deletion still refused: reported, the sweep goes on
    assert failing.ok and failing.launch_templates == []
    assert "UnauthorizedOperation" in failing.launch_template_errors[left]
    sim.configure({"faults": []})
    code, report, _ = await asyncio.to_thread(_sweep_cli, sim, capsys, "--dry-run")
    assert code == 0 and report["launch_templates"] == [left]
    assert await _template_ids(ec2) == {left, other}
    report = await backend.inventory.sweep()
    assert report.launch_templates == [left] and not report.launch_template_errors
    assert await _template_ids(ec2) == {other}
    # The job's instance is not the sweep's business: it runs until its deadline.
    assert (await _states(ec2))[job.handle["instance_id"]] == "running"
