"""What a job's folder sends (snapshot_folder): the ignore rules, symlinks, special files, the
hash cache, the size cap. Pure file-system tests: no AWS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from awsjobs_lab.models import new_job_id
from awsjobs_lab.patterns import JOB_ID
from awsjobs_lab.staging import StagingArea, TooLarge, check_folder_size, snapshot_folder
from awsjobs_lab.staging import snapshot as snapshot_module
from awsjobs_lab.staging.snapshot import HASH_CACHE


def write(path: Path, data: bytes | str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def sent(folder: Path, root: Path) -> list[str]:
    return [e.path for e in snapshot_folder(folder, root).entries]


def test_the_folders_that_never_belong_in_a_job_are_skipped(root: Path) -> None:
    work = root / "work"
    write(work / "analysis.ipynb")
    write(work / "data" / "input.csv")
    for skipped in (".git", "node_modules", ".ipynb_checkpoints", "__pycache__", ".awsjobs"):
        write(work / skipped / "inner")
        write(work / "data" / skipped / "deeper")
    assert sent(work, root) == ["analysis.ipynb", "data/input.csv"]


def test_awsjobsignore_patterns_negation_and_folders(root: Path) -> None:
    work = root / "work"
    write(
        work / ".awsjobsignore",
        "# scratch and big files\n*.tmp\n/results/\nraw/\n*.parquet\n!keep.parquet\n",
    )
    for name in (
        "run.py",
        "a.tmp",
        "sub/b.tmp",
        "results/old.csv",
        "sub/results/kept.csv",  # '/results/' is anchored at the folder
        "raw/x.bin",
        "sub/raw/y.bin",  # 'raw/' matches at any depth
        "big.parquet",
        "keep.parquet",
        "sub/keep.parquet",
    ):
        write(work / name)
    assert sent(work, root) == [
        ".awsjobsignore",
        "keep.parquet",
        "run.py",
        "sub/keep.parquet",
        "sub/results/kept.csv",
    ]


def test_earlier_jobs_by_products_are_skipped(root: Path) -> None:
    """Logs, executed notebooks, rendered reports of earlier jobs (`<stem>.<job id>.<ext>`):
    sent, every rerun would re-send them and bring them back as outputs."""
    work = root / "work"
    job_id = new_job_id()
    for name in (
        "analysis.ipynb",
        f"analysis.{job_id}.ipynb",
        f"analysis.{job_id}.log",
        f"report.{job_id}.html",
        f"report.{job_id}.nb.html",
        f"sub/run.{job_id}.log",  # a script of a subfolder ran there
        # Not a job id in that place: sent.
        f"data.{job_id}",
        f"{job_id}.csv",
        "weights.0123456789abcde.bin",  # 15 digits
        "weights.0123456789ABCDEF.bin",  # ids are lowercase
    ):
        write(work / name)
    assert JOB_ID.match(job_id)
    assert sent(work, root) == sorted(
        [
            f"{job_id}.csv",
            "analysis.ipynb",
            f"data.{job_id}",
            "weights.0123456789ABCDEF.bin",
            "weights.0123456789abcde.bin",
        ]
    )


def test_a_by_product_listed_with_a_bang_in_awsjobsignore_is_sent(root: Path) -> None:
    work = root / "work"
    write(work / ".awsjobsignore", "!baseline.0123456789abcdef.csv\n")
    write(work / "baseline.0123456789abcdef.csv")
    write(work / "run.0123456789abcdef.log")
    assert sent(work, root) == [".awsjobsignore", "baseline.0123456789abcdef.csv"]


def test_a_symlinked_awsjobsignore_inside_the_root_applies(root: Path) -> None:
    work = root / "work"
    write(root / "shared.ignore", "*.log\n")
    (work / ".awsjobsignore").symlink_to(root / "shared.ignore")
    write(work / "run.log")
    write(work / "run.py")
    assert sent(work, root) == [".awsjobsignore", "run.py"]


def test_a_file_in_an_ignored_folder_cannot_be_re_included(root: Path) -> None:
    """As in git: an excluded folder is not entered, so '!' below it has no effect."""
    work = root / "work"
    write(work / ".awsjobsignore", "cache/\n!cache/important.txt\n")
    write(work / "cache" / "important.txt")
    write(work / "main.py")
    assert sent(work, root) == [".awsjobsignore", "main.py"]


def test_symlinks_outside_the_root_are_skipped_inside_followed(root: Path, tmp_path: Path) -> None:
    work = root / "work"
    write(work / "main.py", "print(1)")
    secret = write(tmp_path / "outside" / "secret.txt", "secret")
    shared = write(root / "shared" / "lookup.csv", "a,b\n")
    (work / "leak.txt").symlink_to(secret)
    (work / "leakdir").symlink_to(tmp_path / "outside")
    (work / "lookup.csv").symlink_to(shared)
    (work / "shared").symlink_to(root / "shared")
    (work / "loop").symlink_to(work)  # a folder that contains itself: not walked for ever
    (work / "dangling").symlink_to(root / "missing")
    snapshot = snapshot_folder(work, root)
    assert [e.path for e in snapshot.entries] == ["lookup.csv", "main.py", "shared/lookup.csv"]
    linked = snapshot.entries[0]
    assert linked.source == shared.resolve()
    assert linked.size == 4


def test_special_files_are_skipped(root: Path) -> None:
    work = root / "work"
    write(work / "main.py")
    os.mkfifo(work / "pipe")  # reading it would block the snapshot for ever
    assert sent(work, root) == ["main.py"]


def test_entries_carry_size_mtime_and_sha256(root: Path) -> None:
    work = root / "work"
    path = write(work / "hello.txt", "hello")
    (entry,) = snapshot_folder(work, root).entries
    assert entry.size == 5
    assert entry.mtime_ns == path.stat().st_mtime_ns
    assert entry.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


def test_unchanged_files_are_not_read_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = root / "work"
    for i in range(3):
        write(work / f"data{i}.bin", os.urandom(1000))
    hashed: list[str] = []
    real_sha256 = snapshot_module.sha256_of

    def counting(f: object) -> str:
        hashed.append(getattr(f, "name", "?"))
        return real_sha256(f)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot_module, "sha256_of", counting)
    first = snapshot_folder(work, root)
    assert len(hashed) == 3
    assert (root / HASH_CACHE).is_file()
    hashed.clear()
    write(work / "data1.bin", os.urandom(1000))  # edited: new mtime, new content
    second = snapshot_folder(work, root)
    assert len(hashed) == 1
    assert first.entries[0] == second.entries[0]
    assert first.entries[1].sha256 != second.entries[1].sha256


def test_a_corrupt_hash_cache_is_ignored(root: Path) -> None:
    work = root / "work"
    write(work / "hello.txt", "hello")
    write(root / HASH_CACHE, "{not json")
    (entry,) = snapshot_folder(work, root).entries
    assert entry.sha256.startswith("2cf24dba")


def test_over_the_cap_names_total_cap_and_the_five_biggest(root: Path) -> None:
    work = root / "work"
    for i, mib in enumerate([1, 2, 3, 4, 5, 6]):
        write(work / f"part{i}.bin", b"\0" * (mib << 20))
    with pytest.raises(TooLarge) as caught:
        snapshot_folder(work, root, max_bytes=10 << 20)
    message = str(caught.value)
    assert "21.0 MiB to upload, over the cap of 10.0 MiB" in message
    assert "part5.bin (6.0 MiB), part4.bin (5.0 MiB), part3.bin (4.0 MiB)" in message
    assert "part1.bin (2.0 MiB)" in message and "part0.bin" not in message
    assert ".awsjobsignore" in message
    assert caught.value.status == 400
    assert caught.value.biggest[0] == ("part5.bin", 6 << 20)


def test_the_size_check_counts_what_is_sent_and_reads_none_of_it(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = root / "work"
    write(work / "big.bin", b"\0" * (3 << 20))
    write(work / "skipped" / "huge.bin", b"\0" * (8 << 20))
    write(work / ".awsjobsignore", "skipped/\n")

    real_open = snapshot_module.open_regular

    def only_the_rules(path: Path) -> int:
        assert path.name == ".awsjobsignore", f"{path} opened by a size check"
        return real_open(path)

    monkeypatch.setattr(snapshot_module, "open_regular", only_the_rules)
    check_folder_size(work, root, 4 << 20)  # the ignored folder does not count
    with pytest.raises(TooLarge, match=r"big\.bin \(3\.0 MiB\)"):
        check_folder_size(work, root, 2 << 20)
    assert not (root / HASH_CACHE).exists()


def test_a_folder_outside_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match="not a folder under the server root"):
        snapshot_folder(elsewhere, root)
    with pytest.raises(ValueError, match="not a folder under the server root"):
        check_folder_size(elsewhere, root, 1 << 20)


def test_area_keys_and_normalisation() -> None:
    area = StagingArea(bucket="b", prefix="/team/jobs", owner="Jane Doe", job_id="0" * 16)
    assert area.prefix == "team/jobs/"
    assert area.owner == "Jane_Doe"
    assert area.root == "team/jobs/Jane_Doe/0000000000000000/"
    assert area.inputs == area.root + "in/"
    assert area.outputs == area.root + "out/"
    assert area.log_parts == area.root + "log/"
    assert area.exit_code == area.root + "exit_code"
    assert area.manifest == area.root + "manifest.json"
    assert area.blobs == "team/jobs/Jane_Doe/blobs/"
    assert StagingArea("b", "", "..", "1" * 16).root == "unknown/1111111111111111/"
    with pytest.raises(ValueError):
        StagingArea("b", "awsjobs/", "me", "../../etc")
