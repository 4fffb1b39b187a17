"""What a chaos run reports: the printed table, the JSON form, the story of each job that broke
an invariant, and its section of benchmarks/RESULTS.md (kept when `python -m benchmarks`
rewrites the rest of that file: `results`)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .check import Json, Verdict, epoch, fault_kinds, managed_lives
from .drive import RunLog
from .results import BEGIN, END
from .tap import Tap


@dataclass
class Outcome:
    """Everything a run found, as the table and the JSON show it."""

    facts: dict[str, str]
    verdict: Verdict
    run_log: RunLog
    tap: Tap
    state: Mapping[str, Any]

    def rows(self) -> list[tuple[str, str]]:
        v, tap = self.verdict, self.tap
        states = Counter(str(j["state"]) for j in v.jobs)
        kills = Counter(k.kind.split(" (")[0] for k in tap.kills)
        events = dict(self.run_log.events)
        worst = max(v.leftover.items(), key=lambda item: item[1], default=("", 0.0))
        leftover_total = sum(v.leftover.values())
        return [
            ("jobs", f"{len(v.jobs)} ({_counts(states)})"),
            ("faults injected, by kind", self.faults_text()),
            ("server crashes (SIGKILL, then restart)", f"{len(tap.kills)} ({_counts(kills)})"),
            ("other chaos", _counts(Counter(events)) or "none"),
            ("steps with nothing to act on", _counts(self.run_log.skipped) or "none"),
            (
                "leaks: managed instances billed without an active job (must be 0)",
                str(len(v.leaks)),
            ),
            ("jobs final while their instance ran (must be 0)", str(len(v.final_while_alive))),
            ("jobs run twice in one attempt (must be 0)", str(len(v.run_twice))),
            (
                "jobs final without a reason / still active (must be 0)",
                f"{len(v.without_reason)} / {len(v.still_active)}",
            ),
            (
                "instance-seconds: total / needed / leftover",
                f"{v.instance_seconds:.1f} / {v.needed_seconds:.1f} / {leftover_total:.1f}",
            ),
            (
                "worst leftover instance-seconds (one job)",
                f"{worst[1]:.1f} s (job {worst[0] or '-'}: {self.touched_text(worst[0])})",
            ),
        ]

    def faults_text(self) -> str:
        """Faults by kind; lost answers also by call (their outcome is the uncertain one)."""
        record = self.state["record"]
        kinds = fault_kinds(record)
        lost = {
            key.split(":")[1]: n
            for key, n in record.get("faults_by_action", {}).items()
            if key.endswith(":LostAnswer")
        }
        text = _counts(kinds)
        if lost:
            text += f"; LostAnswer by call: {_counts(lost)}"
        return text

    def touched_text(self, job_id: str) -> str:
        kinds = sorted(touched(self.tap, self.run_log).get(job_id, set()))
        return ", ".join(kinds) or "nothing"

    def kind_rows(self) -> list[tuple[str, str, str, str]]:
        ordered = sorted(self.verdict.per_kind.items(), key=lambda kv: -kv[1].leftover_seconds)
        return [
            (
                kind,
                str(c.jobs),
                f"{c.leftover_seconds:.1f}",
                f"{c.worst_seconds:.1f} ({c.worst_job})",
            )
            for kind, c in ordered
        ]

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "facts": self.facts,
            "ok": v.violations == 0,
            "table": dict(self.rows()),
            "faults": dict(fault_kinds(self.state["record"])),
            "faults_by_action": self.state["record"].get("faults_by_action", {}),
            "kills": [asdict(k) for k in self.tap.kills],
            "events": dict(self.run_log.events),
            "skipped_steps": dict(self.run_log.skipped),
            "restart_seconds": [round(s, 2) for s in self.run_log.restart_seconds],
            "leaks": v.leaks,
            "final_while_alive": [asdict(s) for s in v.final_while_alive],
            "without_reason": v.without_reason,
            "still_active": v.still_active,
            "run_twice": v.run_twice,
            "leftover_seconds": v.leftover,
            "per_kind": {k: asdict(c) for k, c in v.per_kind.items()},
            "broken_jobs": broken_jobs(v),
            "jobs": {str(j["id"]): self.story(str(j["id"])) for j in v.jobs},
        }

    def story(self, job_id: str) -> dict[str, Any]:
        """What happened to one job: its transitions, what touched it, its instances."""
        job = next((j for j in self.verdict.jobs if str(j["id"]) == job_id), {})
        lives = [
            life
            for life in managed_lives(self.state).values()
            if life["tags"].get("awsjobs:job-id") == job_id
        ]
        machines = {m["instance_id"]: m["state"] for m in self.state["instances"]}
        return {
            "state": job.get("state"),
            "error": job.get("error"),
            "history": job.get("history", []),
            "faults": dict(self.tap.job_faults.get(job_id, {})),
            "events": dict(self.run_log.job_events.get(job_id, {})),
            "kills": [asdict(k) for k in self.tap.kills if job_id in k.jobs],
            "instances": [
                {
                    "instance_id": life["instance_id"],
                    "now": machines.get(life["instance_id"]),
                    "launched_at": life["launched_at"],
                    "terminated_at": life["terminated_at"],
                    "state_reason": life["state_reason"],
                    "instance_seconds": life["instance_seconds"],
                }
                for life in lives
            ],
            "runs": self.verdict.runs.get(job_id, 0),
            "touched_by": sorted(touched(self.tap, self.run_log).get(job_id, set())),
            "sequence": self.sequence(job_id, job, lives),
        }

    def sequence(self, job_id: str, job: Mapping[str, Any], lives: list[Json]) -> list[str]:
        """Everything that happened to a job, in time order (UTC, to the millisecond): its
        moves, the faults of calls about it, the chaos aimed at it, its instances' lives."""
        steps: list[tuple[float, str]] = []
        for move in job.get("history", []):
            steps.append((float(move["at"]), f"job {move['state']}: {move.get('reason') or ''}"))
        steps += [(at, f"fault {what}") for at, what in self.tap.job_fault_log.get(job_id, [])]
        steps += [(at, f"chaos {what}") for at, what in self.run_log.job_event_log.get(job_id, [])]
        steps += [
            (k.at, f"server killed ({k.kind}) at {k.call}")
            for k in self.tap.kills
            if job_id in k.jobs
        ]
        for life in lives:
            iid = life["instance_id"]
            steps.append((epoch(life["launched_at"]) or 0.0, f"{iid} launched"))
            if life["terminated_at"]:
                steps.append(
                    (epoch(life["terminated_at"]) or 0.0, f"{iid} down ({life['state_reason']})")
                )
        return [f"{_clock(at)} {what}" for at, what in sorted(steps)]


def _clock(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def touched(tap: Tap, run_log: RunLog) -> dict[str, set[str]]:
    """Job id → the fault kinds, events and kills that touched it."""
    found: dict[str, set[str]] = {}
    for job, faults in tap.job_faults.items():
        found.setdefault(job, set()).update(faults)
    for job, events in run_log.job_events.items():
        found.setdefault(job, set()).update(events)
    for kill in tap.kills:
        for job in kill.jobs:
            found.setdefault(job, set()).add(f"kill: {kill.kind}")
    return found


def broken_jobs(v: Verdict) -> list[str]:
    jobs = {str(m["job"]) for m in v.leaks}
    jobs |= {s.job for s in v.final_while_alive} | set(v.run_twice)
    return sorted(jobs | set(v.without_reason) | set(v.still_active))


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def text(outcome: Outcome) -> str:
    lines = [f"{key}: {value}" for key, value in outcome.facts.items()]
    lines += ["", *_markdown_table(("figure", "value"), outcome.rows())]
    lines += [
        "",
        *_markdown_table(
            ("fault kind or event touching a job", "jobs", "leftover instance-s", "worst (job)"),
            outcome.kind_rows(),
        ),
    ]
    for job_id in broken_jobs(outcome.verdict):
        lines += ["", f"BROKEN job {job_id}: {outcome.story(job_id)}"]
    return "\n".join(lines)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


# -- benchmarks/RESULTS.md ----------------------------------------------------------------------
def section(outcome: Outcome) -> str:
    facts = "\n".join(f"- **{key}**: {value}" for key, value in outcome.facts.items())
    return "\n".join(
        [
            BEGIN,
            "## Chaos run (`python -m benchmarks.chaos`)",
            "",
            "EC2 jobs on the simulated AWS (`tests/awssim`) with faults in every AWS call type, "
            "server SIGKILLs at chosen moments (then a restart on the same store), Stops, spot "
            "interruptions, reboots and terminations from outside; see benchmarks/README.md.",
            "",
            facts,
            "",
            *_markdown_table(("figure", "value"), outcome.rows()),
            "",
            *_markdown_table(
                (
                    "fault kind or event touching a job",
                    "jobs",
                    "leftover instance-s",
                    "worst (job)",
                ),
                outcome.kind_rows(),
            ),
            END,
        ]
    )


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
