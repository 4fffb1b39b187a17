"""Bringing outputs back from moto's S3 beside the script: new, unchanged and conflicting
files, unsafe keys refused; deleting a job's area; the lifecycle rule and its command."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from staging_support import BUCKET, JOB_ID

from awsjobs_lab.cli import main
from awsjobs_lab.errors import BackendError
from awsjobs_lab.staging import (
    InputManifest,
    Progress,
    StagingArea,
    delete_area,
    download_outputs,
    ignore_progress,
    put_lifecycle_rule,
    snapshot_folder,
    upload_inputs,
)
from awsjobs_lab.staging.download import safe_destination


async def staged(s3: Any, area: StagingArea, root: Path, files: dict[str, str]) -> InputManifest:
    work = root / "work"
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    snapshot = snapshot_folder(work, root)
    return await upload_inputs(s3, area, snapshot, 1 << 30, ignore_progress)


async def job_writes(s3: Any, area: StagingArea, outputs: dict[str, str]) -> None:
    for name, text in outputs.items():
        await s3.put_object(Bucket=BUCKET, Key=area.outputs + name, Body=text.encode())


async def test_outputs_land_beside_the_script_and_a_user_edit_is_kept(
    s3: Any, area: StagingArea, root: Path
) -> None:
    work = root / "work"
    manifest = await staged(
        s3, area, root, {"report.ipynb": "input nb", "params.json": "{}", "notes.md": "mine"}
    )
    await job_writes(
        s3,
        area,
        {
            "report.ipynb": "executed nb",  # unchanged on the server since: replaced
            "notes.md": "the job's notes",  # the user edited it meanwhile: kept, job's beside
            "results/table.csv": "a,b\n1,2\n",  # new, in a new folder
            "params.json": "{}",  # the same content: nothing to write
        },
    )
    (work / "notes.md").write_text("mine, edited while the job ran")
    seen: list[Progress] = []
    result = await download_outputs(s3, area, work, manifest, JOB_ID, seen.append)
    assert sorted(result.written) == ["report.ipynb", "results/table.csv"]
    assert result.conflicts == [("notes.md", f"notes.{JOB_ID}.md")]
    assert result.unchanged == ["params.json"]
    assert result.refused == []
    assert (work / "report.ipynb").read_text() == "executed nb"
    assert (work / "results" / "table.csv").read_text() == "a,b\n1,2\n"
    assert (work / "notes.md").read_text() == "mine, edited while the job ran"
    assert (work / f"notes.{JOB_ID}.md").read_text() == "the job's notes"
    assert result.bytes == sum(
        len(t) for t in ("executed nb", "the job's notes", "a,b\n1,2\n", "{}")
    )
    assert seen[-1].phase == "downloading_outputs"
    assert (seen[-1].files_done, seen[-1].files_total) == (4, 4)
    assert not [p for p in work.rglob("*") if ".awsjobs-download-" in p.name]


async def test_a_touched_but_identical_file_counts_as_unchanged(
    s3: Any, area: StagingArea, root: Path
) -> None:
    """Same content, new mtime (saved again without changes): the job may replace it."""
    work = root / "work"
    manifest = await staged(s3, area, root, {"data.txt": "same"})
    os.utime(work / "data.txt", ns=(1, 1))
    await job_writes(s3, area, {"data.txt": "the job's"})
    result = await download_outputs(s3, area, work, manifest, JOB_ID, ignore_progress)
    assert result.written == ["data.txt"] and result.conflicts == []
    assert (work / "data.txt").read_text() == "the job's"


async def test_a_file_created_on_the_server_after_the_snapshot_is_not_overwritten(
    s3: Any, area: StagingArea, root: Path
) -> None:
    work = root / "work"
    manifest = await staged(s3, area, root, {"main.py": "print()"})
    (work / "out.csv").write_text("the user's")
    await job_writes(s3, area, {"out.csv": "the job's"})
    result = await download_outputs(s3, area, work, manifest, JOB_ID, ignore_progress)
    assert result.conflicts == [("out.csv", f"out.{JOB_ID}.csv")]
    assert (work / "out.csv").read_text() == "the user's"


async def test_keys_that_would_land_outside_the_folder_are_refused(
    s3: Any, area: StagingArea, root: Path, tmp_path: Path
) -> None:
    work = root / "work"
    manifest = await staged(s3, area, root, {"main.py": "print()"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    await job_writes(
        s3,
        area,
        {
            "../escaped.txt": "x",
            "sub/../../escaped.txt": "x",
            "link/through-symlink.txt": "x",
            ".git/hooks/post-checkout": "#!/bin/sh\n",
            "fine.txt": "ok",
        },
    )
    result = await download_outputs(s3, area, work, manifest, JOB_ID, ignore_progress)
    assert result.written == ["fine.txt"]
    assert sorted(result.refused) == [
        "../escaped.txt",
        ".git/hooks/post-checkout",
        "link/through-symlink.txt",
        "sub/../../escaped.txt",
    ]
    assert not (root / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert list(outside.iterdir()) == []
    assert not (work / ".git").exists()


async def test_a_file_that_cannot_be_written_does_not_stop_the_others(
    s3: Any, area: StagingArea, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = root / "work"
    manifest = await staged(s3, area, root, {"main.py": "print()"})
    await job_writes(s3, area, {"a.txt": "a", "full.txt": "b", "z.txt": "z"})
    real_replace = os.replace

    def disk_full_for_one(src: Any, dst: Any) -> None:
        if str(dst).endswith("full.txt"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_for_one)
    result = await download_outputs(s3, area, work, manifest, JOB_ID, ignore_progress)
    assert result.written == ["a.txt", "z.txt"]
    assert result.failed == [("full.txt", "No space left on device")]
    assert sorted(p.name for p in work.iterdir()) == ["a.txt", "main.py", "z.txt"]


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "a//b", "./a", "a/./b", "..", "a\\..\\b", "x\x00y", "node_modules/m.js"],
)
def test_unsafe_relative_paths(tmp_path: Path, key: str) -> None:
    assert safe_destination(tmp_path, key) is None


def test_a_symlink_or_folder_at_the_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "file-link").symlink_to(tmp_path / "target")
    (tmp_path / "folder").mkdir()
    assert safe_destination(tmp_path, "file-link") is None
    assert safe_destination(tmp_path, "folder") is None
    assert safe_destination(tmp_path, "target/below") is None  # a file on the way
    assert safe_destination(tmp_path, "new/deeper/file.txt") == tmp_path / "new/deeper/file.txt"


async def test_delete_area_removes_the_job_and_keeps_the_shared_blobs(
    s3: Any, area: StagingArea, root: Path
) -> None:
    await staged(s3, area, root, {f"f{i}.txt": str(i) for i in range(5)})
    await job_writes(s3, area, {"out.txt": "o"})
    await s3.put_object(Bucket=BUCKET, Key=area.log_parts + "000001", Body=b"log")
    await s3.put_object(Bucket=BUCKET, Key=area.exit_code, Body=b"0")
    await s3.create_multipart_upload(Bucket=BUCKET, Key=area.outputs + "half-sent.bin")
    other = StagingArea(BUCKET, area.prefix, area.owner, "fedcba9876543210")
    await s3.put_object(Bucket=BUCKET, Key=other.exit_code, Body=b"0")

    deleted = await delete_area(s3, area)
    assert deleted == 5 + 1 + 1 + 1 + 1  # inputs, output, log part, exit code, manifest
    left = await s3.list_objects_v2(Bucket=BUCKET, Prefix=area.owner_root)
    keys = [o["Key"] for o in left["Contents"]]
    assert not [k for k in keys if k.startswith(area.root)]
    assert other.exit_code in keys
    assert len([k for k in keys if k.startswith(area.blobs)]) == 5
    uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
    assert not uploads.get("Uploads")
    assert await delete_area(s3, area) == 0


async def test_delete_area_of_a_missing_bucket_is_a_backend_error(s3: Any) -> None:
    gone = StagingArea("no-such-bucket", "awsjobs/", "tester", JOB_ID)
    with pytest.raises(BackendError, match="no-such-bucket"):
        await delete_area(s3, gone)


async def test_the_lifecycle_rule_is_merged_with_the_buckets_rules(s3: Any) -> None:
    theirs = {
        "ID": "logs-to-glacier",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}],
    }
    await s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [theirs]}
    )
    await put_lifecycle_rule(s3, BUCKET, "awsjobs/", 14)
    await put_lifecycle_rule(s3, BUCKET, "awsjobs/", 7)  # replaces ours, keeps theirs
    rules = (await s3.get_bucket_lifecycle_configuration(Bucket=BUCKET))["Rules"]
    assert [r["ID"] for r in rules] == ["logs-to-glacier", "awsjobs-expire"]
    ours = rules[1]
    assert ours["Filter"] == {"Prefix": "awsjobs/"}
    assert ours["Expiration"] == {"Days": 7}
    assert ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert ours["Status"] == "Enabled"


async def test_the_lifecycle_rule_on_a_bucket_without_rules(s3: Any) -> None:
    await put_lifecycle_rule(s3, BUCKET, "team/", 30)
    rules = (await s3.get_bucket_lifecycle_configuration(Bucket=BUCKET))["Rules"]
    assert [(r["ID"], r["Expiration"]["Days"]) for r in rules] == [("awsjobs-expire", 30)]


async def test_the_s3_lifecycle_command(s3: Any, moto_endpoint: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["s3-lifecycle", "--bucket", BUCKET, "--prefix", "jobs", "--days", "10"]
    code = await _run_cli([*argv, "--endpoint-url", moto_endpoint, "--json"], out, err)
    assert code == 0, err.getvalue()
    assert json.loads(out.getvalue())["rule"]["Filter"] == {"Prefix": "jobs/"}
    rules = (await s3.get_bucket_lifecycle_configuration(Bucket=BUCKET))["Rules"]
    assert rules[0]["Expiration"] == {"Days": 10}

    code = await _run_cli(
        [
            "s3-lifecycle",
            "--bucket",
            "no-such-bucket",
            "--days",
            "3",
            "--endpoint-url",
            moto_endpoint,
        ],
        out,
        err,
    )
    assert code == 1
    assert "no-such-bucket" in err.getvalue()


def test_the_s3_lifecycle_command_wants_whole_days() -> None:
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        main(["s3-lifecycle", "--bucket", BUCKET, "--days", "0"], io.StringIO(), err)
    assert exited.value.code == 2


async def _run_cli(argv: list[str], out: io.StringIO, err: io.StringIO) -> int:
    """The command runs its own event loop: in a thread, beside this test's."""
    import asyncio

    return await asyncio.to_thread(main, argv, out, err)
