"""The boot script of a scheduled run: a worker that needs no server.

EventBridge Scheduler starts the instance with a RunInstances request fixed when the schedule
was saved, so everything a run needs is in its user data, and what only the run can know (its
id, its deadline) is found at boot. The script is the ordinary worker's, reused:

1. `aws.userdata`: the reboot-proof lifetime deadline and the EFS mount (with its markers;
   storage "s3": nothing to mount);
2. the run's id, from the instance id (IMDSv2): the instance id's last 16 hex digits, in the
   job-id pattern (`patterns.JOB_ID`). AWS's instance ids are `i-0` and 16 hex digits, so the
   mapping is one-to-one and the server inverts it (`instance_id_of_run`);
3. the instance tags itself `awsjobs:job-id` and `awsjobs:expires-at` (its deadline, read back
   from the file step 1 keeps) with `aws ec2 create-tags`: the worker's role needs
   ec2:CreateTags on its own instance (README, "Schedules on EC2");
4. the run's record: the schedule, the job and the instance, so a server that starts after the
   instance is gone still finds the run. EFS: `<root>/.awsjobs/jobs/<run id>/run.json`. S3:
   `run.json` in the run's area (`<prefix><owner>/<run id>/`, a job's layout), with the
   schedule's input manifest copied beside it (the outputs' conflicts are told by it);
5. the job, by the very script an SSM-run job gets, its ids and paths completed at boot. EFS
   (`aws.command`): log appended to the job's log file, exit code to
   `.awsjobs/jobs/<run id>/exit_code`. S3 (`aws.command_s3`): the schedule's inputs downloaded
   into a scratch folder, the log streamed to the run's area, then its outputs and exit code.
   Then `shutdown -h now` (the instance terminates). A reboot kills the job: a per-boot script
   then powers the instance off at once.

A value written into the script (the run record, the job's paths, URLs and argv) is
base64-encoded, as `aws.command` does; the placeholder `RUN_TOKEN` in them is replaced at boot.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest
from ..patterns import INSTANCE_ID, JOB_ID
from .command import FINISH, IMDS_URL, build_commands, encode
from .command_s3 import STATE_ROOT, S3Locations, build_s3_commands, work_dir
from .userdata import (
    BOOT_LOG,
    DEADLINE_FILE,
    MAX_USER_DATA_BYTES,
    build_user_data,
)

RUN_TOKEN = "@AWSJOBS_RUN_ID@"  # stands for the run's id in paths, argv and the record
INSTANCE_TOKEN = "@AWSJOBS_INSTANCE_ID@"
STARTED_TOKEN = "@AWSJOBS_STARTED_AT@"
RUN_RECORD_FILE = "run.json"  # in the run's state folder, beside exit_code
RECORD_MARKER = "AWSJOBS_RUN_RECORD="  # the line of the script that holds the record
RUN_SCRIPT = "/var/lib/awsjobs/scheduled-run.sh"
RUN_STARTED = "/var/lib/awsjobs/scheduled-run-started"  # on disk: survives a reboot
HALT_AFTER_REBOOT = "/var/lib/cloud/scripts/per-boot/awsjobs-scheduled-run"
EXIT_NO_INSTANCE_ID = 94
IMDS_ATTEMPTS = 30
TAG_ATTEMPTS = 5

# The shell variables of aws.command's script that hold the run's id in their value.
_RUN_VARIABLES = (
    "AWSJOBS_LOG",
    "AWSJOBS_EXIT",
    "awsjobs_log_dir",
    "awsjobs_exit_dir",
    "awsjobs_job_id",
)
# Those of aws.command_s3's script (the run's URLs), and the job id it is written for.
_S3_RUN_VARIABLES = ("awsjobs_out_url", "awsjobs_log_url", "awsjobs_exit_url")
STAND_IN_ID = "0" * 16

_PER_BOOT = """#!/bin/bash
# awsjobs-lab: a scheduled run does not survive a reboot (its job was killed): power off.
if [ -e {started} ]; then
  echo "awsjobs: rebooted during a scheduled run; powering off" >>{boot_log}
  shutdown -h now 'awsjobs: scheduled run ended by a reboot'
fi
"""

# 4a. Who the run is: its id from the instance id, its tags. Then its record (4b, EFS or S3).
_IDENTITY = """
# 4. A scheduled run: no server sends a command, this script runs the job itself.
{record_marker}'{record}'
awsjobs_halt_now() {{
  echo "awsjobs: $1; halting"
  shutdown -h now "awsjobs: $1"
  exit {no_id}
}}
AWSJOBS_IMDS="${{AWSJOBS_IMDS_URL:-{imds}}}"
awsjobs_metadata() {{
  token=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \\
    "$AWSJOBS_IMDS/api/token") &&
    curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$AWSJOBS_IMDS/meta-data/$1"
}}
iid=""
n=0
while [ "$n" -lt {imds_attempts} ]; do
  iid=$(awsjobs_metadata instance-id) && break
  n=$((n + 1))
  sleep 2
done
case "$iid" in
  i-[0-9a-f]*) ;;
  *) awsjobs_halt_now "no instance id from the instance metadata" ;;
esac
hex=${{iid#i-}}
while [ ${{#hex}} -lt 16 ]; do hex="0$hex"; done
export AWSJOBS_RUN_ID="${{hex: -16}}"
expires=$(date -u -d "@$(cat {deadline_file})" +%Y-%m-%dT%H:%M:%SZ)
echo "awsjobs: scheduled run $AWSJOBS_RUN_ID of {schedule} on $iid, until $expires"
n=0
while [ "$n" -lt {tag_attempts} ]; do
  aws ec2 create-tags --region {region} --resources "$iid" \\
    --tags "Key=awsjobs:job-id,Value=$AWSJOBS_RUN_ID" "Key=awsjobs:expires-at,Value=$expires" \\
    && break
  n=$((n + 1))
  sleep 5
done
[ "$n" -lt {tag_attempts} ] || echo "awsjobs: could not tag $iid (ec2:CreateTags allowed?)"
awsjobs_write_record() {{
  printf '%s' "${record_variable}" | base64 -d |
    sed -e "s/{run_token}/$AWSJOBS_RUN_ID/g" -e "s/{instance_token}/$iid/g" \\
      -e "s/{started_token}/$(date +%s)/g" > "$1.tmp" && mv -f "$1.tmp" "$1"
}}
"""

# 4b (EFS): the record on the shared file system, beside where the exit code will be.
_EFS_RECORD = """if [ "$mounted" = 1 ]; then
  run_dir={state_dir}/$AWSJOBS_RUN_ID
  mkdir -p "$run_dir"
  awsjobs_write_record "$run_dir/{record_file}"
fi
"""

# 4b (S3): the record in the run's area (how a server finds the run once its instance is
# gone), and the schedule's input manifest beside it (how the outputs' conflicts are told).
# The values carry RUN_TOKEN; the bucket and prefix are the user's: decoded, never quoted.
_S3_RECORD = """export AWS_DEFAULT_REGION={region}
awsjobs_run_url() {{
  printf '%s' "$1" | base64 -d | sed "s/{run_token}/$AWSJOBS_RUN_ID/g"
}}
record_url=$(awsjobs_run_url '{record_url}')
manifest_from=$(awsjobs_run_url '{manifest_from}')
manifest_to=$(awsjobs_run_url '{manifest_to}')
mkdir -p {scratch}
awsjobs_write_record {scratch}/{record_file}
n=0
while [ "$n" -lt {tag_attempts} ]; do
  aws s3 cp --only-show-errors {scratch}/{record_file} "$record_url" &&
    aws s3 cp --only-show-errors "$manifest_from" {scratch}/manifest.json &&
    aws s3 cp --only-show-errors {scratch}/manifest.json "$manifest_to" && break
  n=$((n + 1))
  sleep 5
done
[ "$n" -lt {tag_attempts} ] || echo "awsjobs: could not write the run's record to S3"
"""

# 4c. The job, by the script an SSM-run job gets; a reboot ends the run.
_RUN = """mkdir -p {per_boot_dir} {run_script_dir}
cat > {per_boot} <<'AWSJOBS_PER_BOOT_EOF'
{per_boot_text}AWSJOBS_PER_BOOT_EOF
chmod 755 {per_boot}
touch {started}
cat > {run_script} <<'AWSJOBS_RUN_EOF'
{commands}
AWSJOBS_RUN_EOF
sh {run_script}
echo "awsjobs: scheduled run $AWSJOBS_RUN_ID ended with $?"
"""


@dataclass(frozen=True)
class ScheduledS3:
    """A scheduled run without a shared file system (storage "s3"): the `s3://` URLs it
    uses, those of the run's own area with `RUN_TOKEN` for its id."""

    locations: S3Locations  # inputs: the schedule's `in/`; the rest: the run's area
    record: str  # the run's `run.json`
    manifest_from: str  # the schedule's input manifest ...
    manifest_to: str  # ... copied into the run's area


@dataclass(frozen=True)
class ScheduledRun:
    """What a scheduled run's worker is given, all fixed when the schedule is saved. Paths are
    absolute (the same on the server and the worker) and carry `RUN_TOKEN`."""

    schedule: str
    argv: Sequence[str]
    cwd: str
    log_path: str
    exit_code_path: str
    state_dir: str  # `<root>/.awsjobs/jobs`, where the run's folder is made
    env: Mapping[str, str]
    record: Mapping[str, Any]  # the run record: JSON, with the tokens in its strings
    lifetime_minutes: int
    region: str
    efs_file_system_id: str
    mount_path: str
    efs_access_point_id: str = ""
    efs_use_iam: bool = False
    extra_commands: str = ""
    watch_spot: bool = False
    s3: ScheduledS3 | None = None  # storage "s3": no mount; cwd, log and exit paths unused


def run_id_of_instance(instance_id: str) -> str:
    """The id of the run an instance performs: its id's last 16 hex digits (zero-padded)."""
    if not INSTANCE_ID.match(instance_id):
        raise ValueError(f"not an instance id: {instance_id!r}")
    return instance_id.removeprefix("i-").rjust(16, "0")[-16:]


def instance_id_of_run(run_id: str) -> str:
    """The instance a run's id names, as AWS spells instance ids (`i-0` + 16 hex digits)."""
    if not JOB_ID.match(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    return f"i-0{run_id}"


def _run_id_function() -> list[str]:
    """`awsjobs_run_id NAME`: the run's id in place of `RUN_TOKEN` in that shell variable
    (the `.` keeps trailing newlines through `$(…)`)."""
    return [
        "awsjobs_run_id() {",
        '  eval "awsjobs_value=\\${$1}"',
        "  awsjobs_value=$(printf '%s.' \"$awsjobs_value\" |"
        f' sed "s/{RUN_TOKEN}/$AWSJOBS_RUN_ID/g")',
        '  eval "$1=\\${awsjobs_value%.}"',
        "}",
    ]


def _substitutions() -> list[str]:
    """Lines of aws.command's script, right after its values are decoded: the run's id in
    place of `RUN_TOKEN`."""
    return _run_id_function() + [f"awsjobs_run_id {name}" for name in _RUN_VARIABLES]


def _commands(run: ScheduledRun) -> list[str]:
    """aws.command's script for this run, its arguments completed at boot too."""
    lines = build_commands(
        job_id=RUN_TOKEN,
        argv=run.argv,
        cwd=run.cwd,
        log_path=run.log_path,
        exit_code_path=run.exit_code_path,
        env=run.env,
        watch_spot=run.watch_spot,
        after_decoding=[
            *_substitutions(),
            *(f"awsjobs_run_id awsjobs_arg_{i}" for i in range(len(run.argv))),
        ],
    )
    return lines


def _s3_commands(run: ScheduledRun, s3: ScheduledS3) -> list[str]:
    """aws.command_s3's script for this run. It is written for a stand-in job id (it checks
    its ids); right after its values are decoded, the run's own id replaces it in the
    variables that hold it, and `RUN_TOKEN` in the run's URLs and arguments."""
    lines = build_s3_commands(
        job_id=STAND_IN_ID,
        argv=run.argv,
        locations=s3.locations,
        region=run.region,
        env=run.env,
        watch_spot=run.watch_spot,
    )
    decoded = lines.index(FINISH[0])  # its values are decoded right before FINISH
    completion = [
        "# a scheduled run: its id, known at boot",
        'awsjobs_job_id="$AWSJOBS_RUN_ID"',
        f'AWSJOBS_WORK="{work_dir("$AWSJOBS_RUN_ID")}"',
        f'awsjobs_state="{STATE_ROOT}/$AWSJOBS_RUN_ID"',
        'AWSJOBS_LOG="$awsjobs_state/log"',
        'AWSJOBS_EXIT="$awsjobs_state/exit_code"',
        *_run_id_function(),
        *(f"awsjobs_run_id {name}" for name in _S3_RUN_VARIABLES),
        *(f"awsjobs_run_id awsjobs_arg_{i}" for i in range(len(run.argv))),
    ]
    return [*lines[:decoded], *completion, *lines[decoded:]]


def _record_step(run: ScheduledRun) -> str:
    """Step 4b: the run's record where a server finds it (EFS, or the run's S3 area)."""
    q = shlex.quote
    if run.s3 is None:
        return _EFS_RECORD.format(state_dir=q(run.state_dir), record_file=RUN_RECORD_FILE)
    return _S3_RECORD.format(
        region=q(run.region),
        run_token=RUN_TOKEN,
        record_url=encode(run.s3.record),
        manifest_from=encode(run.s3.manifest_from),
        manifest_to=encode(run.s3.manifest_to),
        scratch=RUN_SCRIPT.rsplit("/", 1)[0],
        record_file=RUN_RECORD_FILE,
        tag_attempts=TAG_ATTEMPTS,
    )


def build_scheduled_user_data(run: ScheduledRun) -> str:
    """The whole boot script of a scheduled run. InvalidRequest over AWS's 16 KB cap."""
    q = shlex.quote
    base = build_user_data(
        job_id=f"schedule {run.schedule}",
        lifetime_minutes=run.lifetime_minutes,
        efs_file_system_id=run.efs_file_system_id,
        efs_access_point_id=run.efs_access_point_id,
        efs_use_iam=run.efs_use_iam,
        mount_path=run.mount_path,
        region=run.region,
        extra_commands=run.extra_commands,
    )
    record = encode(json.dumps(run.record, sort_keys=True))
    per_boot = _PER_BOOT.format(started=RUN_STARTED, boot_log=BOOT_LOG)
    identity = _IDENTITY.format(
        no_id=EXIT_NO_INSTANCE_ID,
        imds=IMDS_URL,
        imds_attempts=IMDS_ATTEMPTS,
        tag_attempts=TAG_ATTEMPTS,
        deadline_file=DEADLINE_FILE,
        schedule=q(run.schedule),
        region=q(run.region),
        record_marker=RECORD_MARKER,
        record_variable=RECORD_MARKER.rstrip("="),
        record=record,
        run_token=RUN_TOKEN,
        instance_token=INSTANCE_TOKEN,
        started_token=STARTED_TOKEN,
    )
    commands = _commands(run) if run.s3 is None else _s3_commands(run, run.s3)
    job = _RUN.format(
        per_boot_dir=HALT_AFTER_REBOOT.rsplit("/", 1)[0],
        run_script_dir=RUN_SCRIPT.rsplit("/", 1)[0],
        per_boot=HALT_AFTER_REBOOT,
        per_boot_text=per_boot,
        started=RUN_STARTED,
        run_script=RUN_SCRIPT,
        commands="\n".join(commands),
    )
    text = base + identity + _record_step(run) + job
    size = len(text.encode("utf-8"))
    if size > MAX_USER_DATA_BYTES:
        raise InvalidRequest(
            f"The scheduled worker's user data is {size} bytes; AWS allows at most "
            f"{MAX_USER_DATA_BYTES} (fewer or shorter env values and parameters, or shorten "
            "c.EC2Backend.extra_user_data)."
        )
    return text


def record_of_user_data(user_data: str) -> dict[str, Any] | None:
    """The run record a scheduled worker's boot script carries (with its tokens), or None."""
    found = re.search(rf"^{RECORD_MARKER}'([A-Za-z0-9+/=]+)'$", user_data, re.MULTILINE)
    if found is None:
        return None
    try:
        record = json.loads(base64.b64decode(found.group(1)).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None
