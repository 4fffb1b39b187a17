"""Taking a plan's steps against the stage, then letting everything settle.

Between steps the driver restarts the server if a kill took it down, turns expired kill
triggers into kills at that moment, and samples the truth (the simulator's instances) against
the app's view (its jobs) for "final while its instance still runs". After the last step the
faults and capacity shortage are switched off and the run waits, bounded, for every job to
end and every instance to go.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..servers import log
from ..util import HTTPError
from . import check, plan
from .stage import Stage
from .tap import Tap, Trigger

SCRIPT_DIR = "chaos"
SCRIPT = f"{SCRIPT_DIR}/job.sh"
# The job's script counts its own runs on the shared file system: the worker ran it that often.
SCRIPT_TEXT = """\
mkdir -p runs && echo "${AWSJOBS_ATTEMPT:-1} $(hostname) $$" >> "runs/$AWSJOBS_JOB_ID"
echo "chaos job $AWSJOBS_JOB_ID: sleeping $CHAOS_SLEEP s, then exit $CHAOS_EXIT"
sleep "$CHAOS_SLEEP"
exit "$CHAOS_EXIT"
"""
TRIGGER_PATIENCE = 12.0  # seconds an armed kill waits for its call; then it kills at once
UPLOAD_PATIENCE = 12.0  # seconds a during-upload kill watches for an upload
SAMPLE_EVERY = 1.0
WORKER_PATIENCE = 8.0  # seconds a worker event waits for a running worker
SETTLE_GRACE = 2.0  # seconds after the last job ended, before the final check
SERVER_ERRORS = (OSError, http.client.HTTPException)
STOP_CALLS = frozenset({"ec2:TerminateInstances", "ssm:CancelCommand"})
LAUNCH_CALLS = frozenset({"ec2:RunInstances", "ec2:CreateFleet"})  # the app launches with either
SEND_CALLS = frozenset({"ssm:SendCommand"})


@dataclass
class RunLog:
    """What the driver did: the jobs it submitted, the events it caused, per job."""

    submitted: dict[str, plan.JobSpec] = field(default_factory=dict)  # job id → spec
    job_events: dict[str, Counter[str]] = field(default_factory=dict)  # job id → event → n
    job_event_log: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # steps with nothing to act on
    lost_submissions: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    settle_seconds: float = 0.0
    sampler: check.Sampler = field(default_factory=check.Sampler)

    def event(self, name: str, job: str | None) -> None:
        self.events[name] += 1
        if job:
            self.job_events.setdefault(job, Counter())[name] += 1
            self.job_event_log.setdefault(job, []).append((time.time(), name))


class Driver:
    def __init__(self, stage: Stage, tap: Tap, the_plan: plan.Plan) -> None:
        self.stage = stage
        self.tap = tap
        self.plan = the_plan
        self.rng = random.Random(the_plan.seed + 1)
        self.log = RunLog()
        self._last_sample = 0.0
        self._watchers: list[threading.Thread] = []  # during-upload kills still watching

    # -- the run ----------------------------------------------------------------------------
    def run(self, settle_timeout: float) -> RunLog:
        scripts = self.stage.root / SCRIPT_DIR
        scripts.mkdir(parents=True, exist_ok=True)
        (scripts / "job.sh").write_text(SCRIPT_TEXT)
        self.stage.aws.configure({"faults": self.plan.faults})
        for number, step in enumerate(self.plan.steps, 1):
            self.pause(step.pause)
            self.ensure_up()
            self.take(step)
            if number % 20 == 0:
                log(f"step {number}/{len(self.plan.steps)}; {self.stage.crashes} crashes")
        self.drain_triggers()
        for watcher in self._watchers:
            watcher.join()
            self.ensure_up()
        self.settle(settle_timeout)
        return self.log

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            for trigger in self.tap.expired(TRIGGER_PATIENCE):
                self.tap.kill_now(f"{trigger.kind} (no such call in time: at random)")
            if time.monotonic() - self._last_sample >= SAMPLE_EVERY:
                self.sample()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def drain_triggers(self) -> None:
        """Armed kills still waiting for their call fire or expire (then kill at random)."""
        deadline = time.monotonic() + TRIGGER_PATIENCE + 1.0
        while self.tap.armed() and time.monotonic() < deadline:
            self.pause(0.5)
            self.ensure_up()

    def ensure_up(self) -> None:
        for attempt in range(3):
            if self.stage.up:
                return
            started = time.monotonic()
            try:
                self.stage.restart()
            except RuntimeError as exc:  # e.g. killed again while starting
                log(f"restart {attempt + 1} failed: {exc}")
                continue
            self.log.restart_seconds.append(time.monotonic() - started)
        if not self.stage.up:
            raise RuntimeError("the server could not be restarted 3 times in a row")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; None if the server died under it (a kill) or refused it."""
        try:
            client = self.stage.client()
        except RuntimeError:
            return None
        try:
            return client.request(method, path, body).json()
        except HTTPError as exc:
            log(f"{method} {path}: {exc}")
            return None
        except SERVER_ERRORS:
            return None
        finally:
            client.close()

    # -- the steps ----------------------------------------------------------------------------
    def take(self, step: plan.Step) -> None:
        if step.action == "submit" and step.job is not None:
            self.submit(step.job)
        elif step.action in ("stop-newest", "stop-running"):
            self.stop(self.newest() if step.action == "stop-newest" else self.running_job())
        elif step.action == "kill":
            self.kill(step.detail)
        elif step.action == "worker":
            self.worker_event(step.detail)
        elif step.action == "capacity-on":
            self.stage.aws.configure({"capacity": plan.capacity_shortage(step.detail)})
            self.log.events[f"{step.detail} shortage"] += 1
        elif step.action == "capacity-off":
            self.stage.aws.configure({"capacity": plan.NO_SHORTAGE})
        elif step.action in ("s3-dies-on", "s3-dies-off"):
            dies = step.action == "s3-dies-on"
            self.stage.aws.configure({"worker": {"s3_upload_dies": dies}})
            self.log.events["workers dying mid-upload"] += int(dies)

    def submit(self, spec: plan.JobSpec) -> None:
        body = {
            "path": SCRIPT,
            "env": {"CHAOS_SLEEP": f"{spec.sleep_seconds:g}", "CHAOS_EXIT": str(spec.exit_code)},
            "max_lifetime_minutes": spec.lifetime_minutes,
            "spot": spec.spot,
        }
        for _ in range(2):  # once more after a restart if a kill took the server down
            job = self.api("POST", "/awsjobs/api/jobs", body)
            if job is not None:
                self.log.submitted[str(job["id"])] = spec
                return
            self.ensure_up()
        self.log.lost_submissions += 1

    def stop(self, job_id: str | None) -> None:
        if job_id is None:
            self.log.skipped["stop"] += 1
            return
        self.api("POST", f"/awsjobs/api/jobs/{job_id}/stop")
        self.log.event("stop", job_id)

    def kill(self, kind: str) -> None:
        if kind == "at-random":
            self.tap.kill_now(kind)
            return
        if kind == "during-upload":
            self.kill_during_upload()
            return
        if kind == "while-stopping":
            job_id = self.running_job()
            self.tap.arm(Trigger(kind, STOP_CALLS, job=job_id))
            self.stop(job_id)
            return
        calls = SEND_CALLS if kind == "send-command-unanswered" else LAUNCH_CALLS
        delay = self.rng.uniform(0.0, 0.05) if kind == "after-launch" else 0.0
        self.tap.arm(Trigger(kind, calls, delay=delay))

    def kill_during_upload(self) -> None:
        """Kill the server while an S3 job's inputs are being uploaded (its `progress` says
        so), watching from a thread while the steps go on (the next submissions upload); after
        a while without one, at random. S3 calls do not pass the simulator's dispatcher, so no
        trigger can be armed on them: the jobs are watched instead."""

        def watch() -> None:
            deadline = time.monotonic() + UPLOAD_PATIENCE
            while time.monotonic() < deadline:
                page = self.api("GET", "/awsjobs/api/jobs?state=launching,pending&limit=500")
                uploading = tuple(
                    str(job["id"])
                    for job in (page or {}).get("jobs", [])
                    if (job.get("progress") or {}).get("phase") == "uploading_inputs"
                )
                if uploading and self.tap.kill_now("during-upload", "s3:upload", uploading):
                    for job in uploading:
                        self.log.event("server kill during upload", job)
                    return
                time.sleep(0.01)
            self.tap.kill_now("during-upload (none seen: at random)")

        self._watchers.append(threading.Thread(target=watch, name="chaos-upload", daemon=True))
        self._watchers[-1].start()

    def worker_event(self, kind: str) -> None:
        """Interrupt, reboot or terminate (from outside) a running worker chosen at random;
        waits a little (bounded) for one to be running."""
        deadline = time.monotonic() + WORKER_PATIENCE
        while True:
            state = self.stage.aws.state()
            candidates = sorted(
                m["instance_id"]
                for m in check.alive_instances(state)
                if m["state"] == "running"
                and (kind != "spot-interruption" or m["market"] == "spot")
            )
            if candidates or time.monotonic() > deadline:
                break
            self.pause(0.3)
        if not candidates:
            self.log.skipped[kind] += 1
            return
        iid = self.rng.choice(candidates)
        action = {
            "spot-interruption": self.stage.aws.interrupt_spot,
            "reboot": self.stage.aws.reboot,
            "external-termination": self.stage.aws.terminate,
        }[kind]
        action(iid)
        job = next(m["job"] for m in check.alive_instances(state) if m["instance_id"] == iid)
        self.log.event(kind, job)

    # -- what the server says -------------------------------------------------------------------
    def jobs(self) -> list[dict[str, Any]] | None:
        """Every job of the store (paged), or None if the server is down."""
        found: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(50):
            page = self.api("GET", f"/awsjobs/api/jobs?limit=500{cursor}")
            if page is None:
                return None
            found += page["jobs"]
            if not page.get("next_cursor"):
                return found
            cursor = f"&cursor={page['next_cursor']}"
        return found

    def newest(self) -> str | None:
        return next(reversed(self.log.submitted), None)

    def running_job(self) -> str | None:
        page = self.api("GET", "/awsjobs/api/jobs?state=running,launching&limit=500")
        ids = sorted(str(job["id"]) for job in (page or {}).get("jobs", []))
        return self.rng.choice(ids) if ids else None

    def sample(self) -> None:
        self._last_sample = time.monotonic()
        jobs = self.jobs()
        if jobs is not None:
            self.log.sampler.sample(jobs, self.stage.aws.state())

    # -- settling ----------------------------------------------------------------------------------
    def settle(self, timeout: float) -> None:
        """No more faults; wait (bounded) until every job has ended. Instances are not waited
        for: one still alive then is a leak (it would only go at its own deadline)."""
        self.tap.disarm_all()
        self.stage.aws.configure({"faults": [], "capacity": plan.NO_SHORTAGE})
        started = time.monotonic()
        log(f"settling (at most {timeout:.0f} s)")
        while time.monotonic() - started < timeout:
            self.ensure_up()
            jobs = self.jobs()
            if jobs is not None:
                self.log.sampler.sample(jobs, self.stage.aws.state())
                if all(check.is_final(j) for j in jobs):
                    break
            time.sleep(SAMPLE_EVERY)
        self.log.settle_seconds = time.monotonic() - started
        # Instances of the last jobs go shutting-down → terminated meanwhile.
        time.sleep(SETTLE_GRACE)
