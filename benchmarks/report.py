"""Result rows, the printed table and `benchmarks/RESULTS.md`."""

from __future__ import annotations

import math
import os
import platform
import re
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


def _markdown_row(row: Row) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |"


def _cells_of(line: str) -> list[str]:
    """The cells of one markdown table row (escaped bars kept inside their cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _previous(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """The facts, figure rows (markdown lines) and notes of a RESULTS.md written here (its
    chaos section, written by another command, is not read)."""
    facts: dict[str, str] = {}
    rows: list[str] = []
    notes: list[str] = []
    heading = ""
    for line in text.partition("<!-- chaos:begin")[0].splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif heading == "Run" and (fact := re.match(r"- \*\*(.+?)\*\*: (.*)", line)):
            facts[fact[1]] = fact[2]
        elif heading == "Figures" and line.startswith("| ") and not line.startswith("| section"):
            rows.append(line)
        elif heading == "Notes" and line.startswith("- "):
            notes.append(line[2:])
    return facts, rows, notes


def _merged(old: list[str], new: list[Row]) -> list[str]:
    """The previous figure rows with those of the sections measured now replaced by `new`
    (in the place of the first replaced row, else after the rows of the same kind)."""
    fresh = {r.section for r in new}
    lines = [_markdown_row(r) for r in new]
    kept = [line for line in old if _cells_of(line)[0] not in fresh]
    at = next((i for i, line in enumerate(old) if _cells_of(line)[0] in fresh), None)
    if at is not None:
        at = sum(1 for line in old[:at] if _cells_of(line)[0] not in fresh)
    else:
        kinds = {r.section.split()[0] for r in new}
        same = [i for i, line in enumerate(kept) if _cells_of(line)[0].split()[0] in kinds]
        at = same[-1] + 1 if same else len(kept)
    return kept[:at] + lines + kept[at:]


def write_markdown(report: Report, path: Path = RESULTS, keep_other_sections: bool = False) -> None:
    """RESULTS.md from this run. `keep_other_sections` (a run of some sections only): the
    previous file's rows of the sections not measured now are kept, with the date and commit
    of the run that measured them."""
    rows = [_markdown_row(r) for r in report.rows]
    notes = list(report.notes)
    if keep_other_sections and path.exists():
        facts, old_rows, old_notes = _previous(path.read_text())
        rows = _merged(old_rows, report.rows)
        notes = old_notes + [n for n in notes if n not in old_notes]
        for key, value in facts.items():  # e.g. the peer of the kept comparisons
            report.facts.setdefault(key, value)
        measured = ", ".join(dict.fromkeys(r.section for r in report.rows))
        report.facts["partial run"] = (
            f"this run measured {measured or 'nothing'}; the other rows are from the run of "
            f"{facts.get('date', 'an unknown date')} at "
            f"{facts.get('commit', 'an unknown commit').split(' ')[0]}"
        )
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
    lines += rows
    verdicts = [cells[6] if len(cells) > 6 else "" for cells in map(_cells_of, rows)]
    unmeasured = sum(1 for cells in map(_cells_of, rows) if cells[-1].startswith("not measured"))
    lines += ["", "## Targets", ""]
    lines.append(
        f"{verdicts.count('met')} met, {verdicts.count('MISSED')} missed, {unmeasured} not "
        f"measured (of {len(rows)} figures; rows without a target are context)."
    )
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    path.write_text("\n".join(lines) + "\n")
