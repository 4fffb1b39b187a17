"""Staging a job's folder through S3 (the EC2 backend's S3 mode), on moto's S3 on 127.0.0.1 in
this process: a 1 GiB folder (a notebook, a few big data files, many small ones; random bytes)
is snapshotted and uploaded for one job, then one cell is added to the notebook and the folder
is staged again for the next job. The library's own counts say what travelled (the tests check
them against what moto received); times are wall clock. moto copies objects in its own process
on this machine's disk, where S3 copies inside its data centre: the second run's time is an
upper bound of the real one, its bytes are exact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from .ours import DUMMY_AWS
from .report import Report, Row
from .servers import log

SECTION = "staging (ours, moto S3)"
REGION = "us-east-1"
BUCKET = "awsjobs-bench"
MiB = 1 << 20
BIG_FILES = 8  # the data: most of the bytes
SMALL_FILES = 200  # code, configs, small tables: most of the files


def run(report: Report, procs: Any, tmp: Path, quick: bool) -> None:
    os.environ.update({k: v for k, v in DUMMY_AWS.items() if k != "AWS_ENDPOINT_URL"})
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _host, port = server.get_host_and_port()
        total = (256 if quick else 1024) * MiB
        asyncio.run(_measure(report, f"http://127.0.0.1:{port}", tmp / "staging", total))
    finally:
        server.stop()


def make_folder(root: Path, total: int) -> Path:
    """A job's folder of about `total` bytes: distinct random content in every MiB (one random
    block, numbered, so generating 1 GiB costs no more than writing it)."""
    work = root / "project"
    (work / "data").mkdir(parents=True)
    (work / "src").mkdir()
    block = bytearray(os.urandom(MiB))
    counter = 0

    def write(path: Path, size: int) -> None:
        nonlocal counter
        with open(path, "wb") as f:
            for start in range(0, size, MiB):
                counter += 1
                block[:8] = counter.to_bytes(8, "little")
                f.write(block[: min(MiB, size - start)])

    small = 256 * 1024
    big = (total - SMALL_FILES * small) // BIG_FILES
    for i in range(BIG_FILES):
        write(work / "data" / f"part-{i:02d}.parquet", big)
    for i in range(SMALL_FILES):
        write(work / "src" / f"module_{i:03d}.py", small)
    (work / "analysis.ipynb").write_text(_notebook(cells=40))
    return work


def _notebook(cells: int) -> str:
    import json

    source = ["import pandas as pd\n", "df = pd.read_parquet('data/part-00.parquet')\n"]
    rows = [{"cell_type": "code", "source": source, "outputs": [], "metadata": {}}] * cells
    return json.dumps({"cells": rows, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


async def _stage(s3: Any, work: Path, root: Path, job_id: str) -> tuple[Any, float, float]:
    """One job's inputs staged: the manifest, the snapshot's and the upload's seconds."""
    from awsjobs_lab.staging import StagingArea, ignore_progress, snapshot_folder, upload_inputs

    area = StagingArea(bucket=BUCKET, prefix="awsjobs/", owner="bench", job_id=job_id)
    started = time.monotonic()
    snapshot = await asyncio.to_thread(snapshot_folder, work, root)
    hashed = time.monotonic()
    manifest = await upload_inputs(s3, area, snapshot, 4 << 30, ignore_progress)
    return manifest, hashed - started, time.monotonic() - hashed


async def _measure(report: Report, endpoint: str, base: Path, total: int) -> None:
    from botocore.config import Config

    from awsjobs_lab.aws.clients import shared_session

    log(f"writing a {total // MiB} MiB folder")
    work = make_folder(base, total)
    size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    files = sum(1 for p in work.rglob("*") if p.is_file())
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=20)
    async with shared_session().create_client(
        "s3", region_name=REGION, endpoint_url=endpoint, config=config
    ) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        log("staging it cold")
        cold, cold_hash, cold_upload = await _stage(s3, work, base, "0000000000000001")
        notebook = work / "analysis.ipynb"
        notebook.write_text(_notebook(cells=41))  # one cell added
        log("staging it again after one edit")
        warm, warm_hash, warm_upload = await _stage(s3, work, base, "0000000000000002")
    _rows(
        report,
        size,
        files,
        notebook.stat().st_size,
        cold,
        warm,
        (cold_hash, cold_upload),
        (warm_hash, warm_upload),
    )


def _rows(
    report: Report,
    size: int,
    files: int,
    notebook: int,
    cold: Any,
    warm: Any,
    cold_times: tuple[float, float],
    warm_times: tuple[float, float],
) -> None:
    what = f"{size / MiB:.0f} MiB folder, {files} files"
    cold_s, warm_s = sum(cold_times), sum(warm_times)
    report.add(
        Row(
            SECTION,
            f"{what}, staged cold: time",
            "s",
            cold_s,
            note=f"snapshot (SHA-256 of every file) {cold_times[0]:.1f} s, upload "
            f"{cold_times[1]:.1f} s ({cold.bytes_sent / MiB / max(cold_times[1], 1e-9):.0f} "
            f"MiB/s); {len(cold.files_sent)} files sent, multipart above 16 MiB",
        )
    )
    report.add(Row(SECTION, f"{what}, staged cold: bytes sent", "MiB", cold.bytes_sent / MiB))
    report.limit_row(
        SECTION,
        "same folder after one edited notebook, next job: bytes sent",
        warm.bytes_sent / 1024,
        notebook / 1024,
        unit="KiB",
        strict=False,
        note=f"files sent: {', '.join(warm.files_sent) or 'none'}; "
        f"{warm.bytes_copied / MiB:.0f} MiB copied inside S3 (CopyObject); target: the "
        "notebook's size",
    )
    report.add(
        Row(
            SECTION,
            "same folder after one edited notebook, next job: time",
            "s",
            warm_s,
            note=f"snapshot {warm_times[0]:.2f} s (hash cache: only the notebook read), upload "
            f"{warm_times[1]:.2f} s (HeadObject + CopyObject per file; moto copies on this disk)",
        )
    )
    report.limit_row(
        SECTION,
        "bytes sent after one edit ÷ bytes sent cold",
        warm.bytes_sent / max(cold.bytes_sent, 1),
        0.001,
        unit="",
        strict=False,
        note=f"time ratio {warm_s / max(cold_s, 1e-9):.3f}",
    )
