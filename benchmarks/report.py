"""Result rows, the printed table and `benchmarks/RESULTS.md`."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Row:
    """One figure. A comparison has `peer` and a `ratio` target; a scale figure has an absolute
    `limit` (ours alone). `met` is None when there is no target or nothing was measured."""

    section: str
    metric: str
    unit: str = "ms"
    ours: float | None = None
    peer: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # run-wide facts (load, versions, skips)
    facts: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print("  " + _line(row), flush=True)
        return row

    def ratio_row(
        self,
        section: str,
        metric: str,
        ours: float | None,
        peer: float | None,
        max_ratio: float,
        note: str = "",
        unit: str = "ms",
    ) -> Row:
        row = Row(section, metric, unit, ours, peer, f"ratio ≤ {max_ratio:g}", None, note)
        if row.ratio is not None:
            row.met = row.ratio <= max_ratio
        return self.add(row)

    def limit_row(
        self,
        section: str,
        metric: str,
        ours: float | None,
        limit: float,
        unit: str = "ms",
        note: str = "",
        strict: bool = True,
    ) -> Row:
        sign = "<" if strict else "≤"
        row = Row(section, metric, unit, ours, None, f"{sign} {limit:g} {unit}".strip(), None, note)
        if ours is not None and not math.isnan(ours):
            row.met = ours < limit if strict else ours <= limit
        return self.add(row)

    def missing(self, section: str, metric: str, target: str, why: str) -> Row:
        return self.add(Row(section, metric, "", None, None, target, None, f"not measured: {why}"))


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "—"
    if unit in ("ms", "s"):
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    elif unit in ("%",):
        text = f"{value:.2f}"
    else:
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def _verdict(row: Row) -> str:
    return {True: "met", False: "MISSED", None: "—"}[row.met]


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    return [
        row.section,
        row.metric,
        _fmt(row.ours, row.unit),
        _fmt(row.peer, row.unit),
        "—" if ratio is None else f"{ratio:.3f}",
        row.target or "—",
        _verdict(row),
        row.note,
    ]


HEADER = ["section", "metric", "ours", "peer", "ours/peer", "target", "verdict", "note"]


def _line(row: Row) -> str:
    cells = _cells(row)
    return " | ".join(cells[:7]) + (f"  ({cells[7]})" if cells[7] else "")


def table_text(rows: list[Row]) -> str:
    data = [HEADER[:7]] + [_cells(r)[:7] for r in rows]
    widths = [max(len(line[i]) for line in data) for i in range(7)]
    out = []
    for n, line in enumerate(data):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_facts() -> dict[str, str]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model or platform.processor() or "unknown",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def write_markdown(report: Report, path: Path = RESULTS) -> None:
    lines = [
        "# awsjobs-lab benchmarks: results",
        "",
        "Written by `python -m benchmarks` (see `benchmarks/__main__.py`); do not edit by hand.",
        "Every comparison with the peer (jupyter-scheduler 2.12.1) is a ratio of two figures",
        "measured in the same run on the same machine; absolute times on a shared machine drift.",
        "",
        "## Run",
        "",
    ]
    for key, value in report.facts.items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## Figures", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in report.rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    missed = [r for r in report.rows if r.met is False]
    unmeasured = [r for r in report.rows if r.met is None and r.note.startswith("not measured")]
    lines += ["", "## Targets", ""]
    met = sum(1 for r in report.rows if r.met)
    lines.append(
        f"{met} met, {len(missed)} missed, {len(unmeasured)} not measured "
        f"(of {len(report.rows)} figures; rows without a target are context)."
    )
    if report.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in report.notes]
    path.write_text("\n".join(lines) + "\n")
