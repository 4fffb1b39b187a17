"""Front-end figures: JupyterLab with our extension in Debian's chromium, driven by
playwright-core (`benchmarks/frontend/bench.mjs`, its own tiny package.json).

The store is seeded with 1,000 finished jobs through `JobStore.insert` before JupyterLab
starts. Nothing is downloaded but the npm package (no browser download: Debian's chromium).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..ours import data_path, start_ours
from ..report import Report
from ..scale import seed_store
from ..servers import log
from ..util import Processes

SECTION = "front end (ours)"
HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
SEEDED = 1000

# The log grows by 60,000 numbered lines of 88 bytes a second (5.28 MB/s; 211 MB in 40 s),
# with bash builtins and `seq` only, then ends with a marker line.
LINE_TEXT = " a line of a long job's output, padded to look like a real log ".ljust(77, ".")
BIG_LOG_SCRIPT = (
    "exec 3<> <(:)\n"
    "n=0\n"
    "for s in $(seq 1 {seconds}); do\n"
    f'  seq -f "%010g{LINE_TEXT}" $n $((n + 59999))\n'
    "  n=$((n + 60000))\n"
    "  read -t 1 -u 3 || true\n"
    "done\n"
    "echo END-OF-BENCH-LOG\n"
)


def _missing(report: Report, why: str) -> None:
    report.missing(
        SECTION, "panel update from a poll, 1,000 jobs: main-thread time", "< 50 ms", why
    )
    report.missing(SECTION, "log view following a 200 MB log: DOM nodes", "< 2,000", why)
    report.missing(SECTION, "log view following a 200 MB log: JS heap", "< 150 MB", why)


def _extension_built() -> str | None:
    """None if JupyterLab lists awsjobs-lab as enabled and OK, else why not."""
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run(
        [str(jupyter), "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in (out.stdout + out.stderr).splitlines():
        if "awsjobs-lab" in line and "enabled" in line and "OK" in line:
            return None
    return "JupyterLab does not list awsjobs-lab (build it: .venv/bin/pip install -e .)"


def _ensure_playwright() -> None:
    if (HERE / "node_modules" / "playwright-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    log("installing playwright-core into benchmarks/frontend/node_modules")
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent"],
        cwd=HERE,
        check=True,
        timeout=300,
    )


def run(report: Report, procs: Processes, tmp: Path, quick: bool) -> None:
    why = _extension_built()
    if why is None and not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if why is None and shutil.which("node") is None:
        why = "node is not installed"
    if why is not None:
        _missing(report, why)
        return
    _ensure_playwright()

    base = tmp / "ours-lab"
    count = asyncio.run(_seed(data_path(base) / "jobs.sqlite"))
    log(f"seeded {count} jobs through JobStore.insert")
    root = base / "root"
    (root / "bench").mkdir(parents=True, exist_ok=True)
    (root / "bench" / "quick.sh").write_text("exit 0\n")
    seconds = 8 if quick else 40
    (root / "bench" / "biglog.sh").write_text(BIG_LOG_SCRIPT.format(seconds=seconds))
    server = start_ours(
        procs,
        base,
        config={"LabApp": {"expose_app_in_browser": True}},
        app="lab",
    )
    log(f"JupyterLab on 127.0.0.1:{server.port}")
    bench_config = {
        "base": f"http://127.0.0.1:{server.port}",
        "token": server.token,
        "chromium": CHROMIUM,
        "updates": 4 if quick else 10,
        "followSeconds": seconds + 20,
        "bigScript": "bench/biglog.sh",
        "quickScript": "bench/quick.sh",
    }
    env = procs.env({"BENCH_CONFIG": json.dumps(bench_config)})
    node = shutil.which("node") or "node"
    out_path = base / "bench-node.log"
    started = time.monotonic()
    proc = procs.start([node, str(HERE / "bench.mjs")], cwd=HERE, env=env, log=out_path)
    try:
        proc.wait(timeout=300 + seconds)
    except subprocess.TimeoutExpired:
        procs.stop(proc)
    finally:
        procs.stop(server.proc)
    output = out_path.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"the browser benchmark failed ({proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    log(f"browser part took {time.monotonic() - started:.0f} s")
    _report(report, result, quick)


async def _seed(db: Path) -> int:
    await seed_store(db, SEEDED, [])
    return SEEDED


def _report(report: Report, result: dict[str, Any], quick: bool) -> None:
    report.limit_row(
        SECTION,
        f"panel update from a poll, {SEEDED:,} jobs stored: main-thread time "
        f"(median of {len(result['updateMs'])})",
        float(result["updateMedianMs"]),
        50.0,
        note=(
            "CDP TaskDuration from refresh to the new row painted; "
            f"{result['rowsAfter']} rows shown (the panel's first page); baseline without a "
            f"refresh {result['baselineMedianMs']:.1f} ms; "
            f"all: {', '.join(f'{v:.0f}' for v in result['updateMs'])} ms"
        ),
    )
    size_mb = result["logSizeBytes"] / 1e6
    follow = f"log view following a log growing to {size_mb:.0f} MB"
    state = "to its end" if result["logComplete"] else "NOT to its end"
    report.limit_row(
        SECTION,
        f"{follow}: DOM nodes of the log view (most seen)",
        float(result["logMaxLogViewNodes"]),
        2000.0,
        unit="nodes",
        note=(
            f"followed {state}; whole Jobs panel {result['logMaxPanelNodes']}, whole document "
            f"{result['logMaxDocumentNodes']} (CDP Nodes {result['logMaxCdpNodes']:.0f}); "
            f"last line shown: {result['logLastLine'][:40]!r}"
        ),
    )
    report.limit_row(
        SECTION,
        f"{follow}: the tab's JS heap (most seen)",
        float(result["logMaxHeapMB"]),
        150.0,
        unit="MB",
        note=(
            f"JSHeapUsedSize sampled each second; {result['logHeapAfterGcMB']:.0f} MB after GC "
            f"at the end; JupyterLab loaded in {result['labLoadSeconds']:.0f} s"
        ),
    )
    if quick:
        report.notes.append("front end, quick mode: the followed log grows to ~40 MB only")
