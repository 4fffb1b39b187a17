"""The SSM `AWS-RunShellScript` command that runs one job on a worker without a shared file
system (storage "s3"): its files travel through the job's S3 area (`staging.StagingArea`).

The same frame as `command.py` (values sent base64-encoded, the boot script's `ready` marker,
once per instance, the spot watcher, the exit code, the halt), with the S3 steps around the run:

1. downloads `in/` (the snapshot of the script's folder) into a scratch folder on the instance's
   disk, `/var/lib/awsjobs/work/<job id>` (after a spot relaunch, `out/` of the earlier attempt
   over it: its checkpoints), then touches a marker;
2. runs the job there with its output appended to a log *outside* the scratch folder, while a
   background loop sends the log's new bytes every few seconds as numbered objects
   `log/<attempt>-<part>` (`01-000001`, `01-000002`, ...). The loop keeps its cursor in a file
   and writes the range of a part *before* sending it, so a part sent again (after a failure,
   or after the loop was killed mid-send) always has the same bytes: the server appends each
   part once;
3. at the end (also after SIGTERM from a Stop, the spot notice or the lifetime's halt, as far as
   it gets) uploads the files newer than the marker to `out/`, sends the rest of the log, and
   only then writes `exit_code` to S3: when the server sees it, everything else is there.

A graceful end: the script traps TERM (the job keeps the default action) and records its pid and
process group in `<state>/pid`, so a Stop sends SIGTERM to the job through a short SSM command of
its own (`build_s3_signal_commands`: SSM's CancelCommand kills the command's process group with
SIGKILL, nothing would be uploaded). A signal that comes before the job started (no pid yet)
leaves `<state>/stop-requested`, which the script reads before it starts the job. The lifetime:
the boot script halts the instance at its deadline (`userdata.DEADLINE_FILE`); a watcher sends
SIGTERM to the job `term_before_deadline` seconds earlier, then the outputs and the log go to S3
and the instance halts with no exit code written, as at the deadline (the job reads timed out).
After a spot notice likewise: outputs and log, no exit code, then AWS reclaims the instance.

Credentials come from the instance profile (AWS CLI v2 is on the AL2023 worker image). Every
`aws` invocation uses only what the simulator's shim implements (tests/awssim/aws_shim.py).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidRequest
from ..patterns import JOB_ID
from .command import (
    _DECODER,
    EXIT_NO_FOLDER,
    FINISH,
    SPOT_RECLAIM_WAIT_SECONDS,
    _spot_watcher,
    _wait_for_mount,
    check_values,
    decode_line,
    once_per_instance,
)
from .userdata import DEADLINE_FILE, FAILED_MARKER, MARKER_DIR, READY_MARKER

WORK_ROOT = "/var/lib/awsjobs/work"  # the instance's disk (the simulator's sandbox moves it)
STATE_ROOT = "/var/lib/awsjobs/state"
LOG_INTERVAL_SECONDS = 3
EXIT_NO_INPUTS = 94
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped before the job started
REGION = re.compile(r"[a-z0-9-]{1,40}\Z")
# What the job may create that is never an output.
SKIPPED_OUTPUTS = ("*/.ipynb_checkpoints/*", "*/__pycache__/*")


@dataclass(frozen=True)
class S3Locations:
    """The `s3://` URLs of one job's area that the worker uses."""

    inputs: str  # ".../in/"
    outputs: str  # ".../out/"
    log_parts: str  # ".../log/"
    exit_code: str  # ".../exit_code"


def work_dir(job_id: str) -> str:
    return f"{WORK_ROOT}/{job_id}"


def log_part_name(attempt: int, part: int) -> str:
    """The name of one log part under `log/`: sorted by name is sorted by (attempt, part)."""
    return f"{attempt:02d}-{part:06d}"


# Step 2's loop and the final flush. The cursor file holds "next-part sent-bytes end": `end`
# is the range of the part being sent ("-": none pending).
_LOG_STREAM = [
    "awsjobs_flush_log() {",
    '  if ! read -r awsjobs_part awsjobs_sent awsjobs_end < "$awsjobs_state/log-cursor"; then',
    "    awsjobs_part=1; awsjobs_sent=0; awsjobs_end=-",
    "  fi",
    '  if [ "$awsjobs_end" = - ]; then',
    '    awsjobs_size=$(wc -c < "$AWSJOBS_LOG" 2>/dev/null) || awsjobs_size=0',
    "    awsjobs_size=$((awsjobs_size + 0))",
    '    [ "$awsjobs_size" -gt "$awsjobs_sent" ] || return 0',
    "    awsjobs_end=$awsjobs_size",
    '    echo "$awsjobs_part $awsjobs_sent $awsjobs_end" > "$awsjobs_state/log-cursor.tmp"',
    '    mv -f "$awsjobs_state/log-cursor.tmp" "$awsjobs_state/log-cursor"',
    "  fi",
    '  awsjobs_key=$(printf \'%s%02d-%06d\' "$awsjobs_log_url" "$awsjobs_attempt" "$awsjobs_part")',
    '  tail -c +"$((awsjobs_sent + 1))" "$AWSJOBS_LOG" | head -c "$((awsjobs_end - awsjobs_sent))"'
    ' | aws s3 cp --only-show-errors - "$awsjobs_key" || return 1',
    '  echo "$((awsjobs_part + 1)) $awsjobs_end -" > "$awsjobs_state/log-cursor.tmp"',
    '  mv -f "$awsjobs_state/log-cursor.tmp" "$awsjobs_state/log-cursor"',
    "}",
    "awsjobs_stream_log() {",
    '  while [ ! -e "$awsjobs_state/log-stop" ]; do',
    f"    sleep {LOG_INTERVAL_SECONDS}",
    "    awsjobs_flush_log",
    "  done",
    "}",
    "awsjobs_flush_log_all() {",
    "  # a pending part first, then what is left; a few tries",
    "  for awsjobs_try in 1 2 3 4 5 6; do",
    "    awsjobs_flush_log && awsjobs_flush_log && return 0",
    "    sleep 1",
    "  done",
    "  echo 'awsjobs: could not send the end of the log to S3' >&2",
    "}",
]


def _outputs() -> list[str]:
    """Step 3: files newer than the marker, linked into a staging folder, sent in one call."""
    skipped = " ".join(f"! -path {shlex.quote(p)}" for p in SKIPPED_OUTPUTS)
    copy = (
        'for f do mkdir -p "$0/${f%/*}" && '
        '{ ln "$f" "$0/$f" 2>/dev/null || cp -p "$f" "$0/$f"; }; done'
    )
    return [
        "awsjobs_upload_outputs() {",
        '  [ -e "$awsjobs_state/inputs-done" ] || return 0',
        '  rm -rf "$awsjobs_state/out" && mkdir -p "$awsjobs_state/out" || return 1',
        '  (cd "$AWSJOBS_WORK" && find . -type f -newer "$awsjobs_state/inputs-done"'
        f' {skipped} -exec sh -c {shlex.quote(copy)} "$awsjobs_state/out" {{}} +) || return 1',
        '  [ -n "$(ls -A "$awsjobs_state/out")" ] || return 0',
        "  for awsjobs_try in 1 2 3; do",
        '    aws s3 cp --only-show-errors --recursive "$awsjobs_state/out" "$awsjobs_out_url"'
        " && return 0",
        "    sleep 2",
        "  done",
        "  echo 'awsjobs: could not upload the outputs to S3' >&2",
        "  return 1",
        "}",
    ]


_ENDINGS = [
    "awsjobs_stop_streaming() {",
    '  touch "$awsjobs_state/log-stop"',
    '  if [ -n "${awsjobs_streamer:-}" ]; then wait "$awsjobs_streamer" 2>/dev/null; fi',
    "}",
    "# What the server brings back: the new files, then the rest of the log.",
    "awsjobs_save_work() {",
    "  awsjobs_stop_streaming",
    "  awsjobs_upload_outputs",
    "  awsjobs_flush_log_all",
    "}",
    "# Everything the server brings back, then the exit code (local, then S3), then the halt.",
    "awsjobs_s3_finish() {",
    "  awsjobs_save_work",
    "  for awsjobs_try in 1 2 3 4 5; do",
    '    printf \'%s\\n\' "$1" | aws s3 cp --only-show-errors - "$awsjobs_exit_url" && break',
    "    sleep 2",
    "  done",
    '  awsjobs_finish "$1"',
    "}",
    "# A graceful Stop that came before the job started (see build_s3_signal_commands).",
    "awsjobs_stop_if_asked() {",
    '  if [ -e "$awsjobs_state/stop-requested" ]; then awsjobs_termed=1; fi',
    '  if [ -n "${awsjobs_termed:-}" ]; then',
    "    echo '[awsjobs] stopped before the job started' >> \"$AWSJOBS_LOG\"",
    f"    awsjobs_s3_finish {EXIT_TERMINATED}",
    "  fi",
    "}",
]

# `awsjobs_term PID GROUP`: SIGTERM to the job of the script PID, as the spot watcher sends it:
# to the script's process group when the script leads it (the SSM agent makes the command's
# shell a group leader: the job and its children are in it), else to the script's children.
_TERM = [
    "awsjobs_term() {",
    '  if [ "$2" = "$1" ]; then kill -TERM -- "-$1"; else pkill -TERM -P "$1"; fi',
    "}",
]
_GROUP_OF_SCRIPT = "$(ps -o pgid= -p $$ | tr -d ' ')"


def _lifetime_watcher(term_before_deadline: int) -> list[str]:
    """`awsjobs_watch_lifetime`: SIGTERM to the job `term_before_deadline` seconds before the
    deadline the boot script keeps on the instance's disk (none there: nothing to watch)."""
    return [
        "awsjobs_watch_lifetime() {",
        f"  awsjobs_deadline=$(cat {DEADLINE_FILE} 2>/dev/null) || return 0",
        "  case \"$awsjobs_deadline\" in ''|*[!0-9]*) return 0 ;; esac",
        f"  awsjobs_term_at=$((awsjobs_deadline - {int(term_before_deadline)}))",
        '  while [ "$(date +%s)" -lt "$awsjobs_term_at" ]; do sleep 1; done',
        '  touch "$awsjobs_state/lifetime-ended"',
        f'  echo "[awsjobs] the maximum lifetime ends in {int(term_before_deadline)} s: SIGTERM'
        ' sent to the job" >> "$AWSJOBS_LOG"',
        f'  awsjobs_term $$ "{_GROUP_OF_SCRIPT}"',
        "}",
    ]


def _download(attempt: int) -> list[str]:
    """Step 1: the snapshot into the scratch folder (and the earlier attempt's outputs)."""
    lines = [
        "# 1. the job's folder from S3 into the scratch folder on the instance's disk",
        'if ! aws s3 cp --only-show-errors --recursive "$awsjobs_in_url" "$AWSJOBS_WORK"'
        ' >> "$AWSJOBS_LOG" 2>&1; then',
        "  echo '[awsjobs] could not download the files of the job from S3' >> \"$AWSJOBS_LOG\"",
        f"  awsjobs_s3_finish {EXIT_NO_INPUTS}",
        "fi",
    ]
    if attempt > 1:
        lines += [
            "# a later attempt: what the earlier one uploaded (its checkpoints) over the inputs",
            'aws s3 cp --only-show-errors --recursive "$awsjobs_out_url" "$AWSJOBS_WORK"'
            ' >> "$AWSJOBS_LOG" 2>&1 || true',
        ]
    return [*lines, 'touch "$awsjobs_state/inputs-done"']


def _run(argv: Sequence[str], watch_spot: bool, watch_lifetime: bool) -> list[str]:
    """Step 2: the job, the log streamer alongside (and the spot and lifetime watchers, if
    asked). TERM is trapped by the script (never by the job) so that it lives on to upload what
    it can. After the spot notice or the lifetime's SIGTERM no exit code is written: the
    outputs and the log go up, then the instance ends as it would have (reclaimed, halted)."""
    run = " ".join(f'"$awsjobs_arg_{i}"' for i in range(len(argv)))
    lines = ["awsjobs_stream_log &", "awsjobs_streamer=$!"]
    if watch_spot:
        lines += ["awsjobs_watch_spot &", "awsjobs_watcher=$!"]
    if watch_lifetime:
        lines += ["awsjobs_watch_lifetime &", "awsjobs_lifetime_watcher=$!"]
    lines += [f'{run} >> "$AWSJOBS_LOG" 2>&1 < /dev/null', "awsjobs_rc=$?"]
    if watch_lifetime:
        lines += [
            'kill "$awsjobs_lifetime_watcher" 2>/dev/null',
            'if [ -e "$awsjobs_state/lifetime-ended" ]; then',
            "  echo \"[awsjobs] exit code $awsjobs_rc after the lifetime's SIGTERM: not recorded;"
            ' the instance halts at its maximum lifetime" >> "$AWSJOBS_LOG"',
            "  awsjobs_save_work",
            "  awsjobs_halt",
            '  exit "$awsjobs_rc"',
            "fi",
        ]
    if watch_spot:
        lines += [
            'kill "$awsjobs_watcher" 2>/dev/null',
            'if [ -e "$awsjobs_notice" ]; then',
            '  echo "[awsjobs] exit code $awsjobs_rc after the spot interruption notice: not'
            ' recorded; this attempt ends when AWS reclaims the instance" >> "$AWSJOBS_LOG"',
            "  awsjobs_save_work",
            f"  sleep {SPOT_RECLAIM_WAIT_SECONDS}",
            "fi",
        ]
    return lines


def build_s3_commands(
    *,
    job_id: str,
    argv: Sequence[str],
    locations: S3Locations,
    region: str,
    env: Mapping[str, str] | None = None,
    attempt: int = 1,
    watch_spot: bool = False,
    term_before_deadline: int = 0,
    ready_wait_seconds: int = 900,
    shutdown: bool = True,
) -> list[str]:
    """The `commands` parameter of AWS-RunShellScript for a job whose files are in S3.
    `term_before_deadline` > 0: the job gets SIGTERM that long before the instance's deadline."""
    env = dict(env or {})
    if not JOB_ID.match(job_id):
        raise InvalidRequest(f"not a job id: {job_id!r}")
    if not REGION.match(region):
        raise InvalidRequest(f"not an AWS region: {region!r}")
    work, state = work_dir(job_id), f"{STATE_ROOT}/{job_id}"
    check_values(argv, (work, state), env)
    names = sorted(env)
    halt = "shutdown -h now 'awsjobs: job finished' >/dev/null 2>&1 || true" if shutdown else ":"
    return [
        "set -u",
        f"# awsjobs-lab job {job_id} (files through S3)",
        'PATH="$PATH:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"; export PATH',
        f"AWS_DEFAULT_REGION={region}; export AWS_DEFAULT_REGION",
        "awsjobs_halt() {",
        f"  {halt}",
        "}",
        *_DECODER,
        "# 0. the job's values, sent encoded so that SSM takes none of them for a reference",
        f"AWSJOBS_WORK={work}",
        f"awsjobs_state={state}",
        'AWSJOBS_LOG="$awsjobs_state/log"',
        'AWSJOBS_EXIT="$awsjobs_state/exit_code"',
        f"awsjobs_attempt={int(attempt)}",
        decode_line("awsjobs_job_id", job_id),
        decode_line("awsjobs_in_url", locations.inputs),
        decode_line("awsjobs_out_url", locations.outputs),
        decode_line("awsjobs_log_url", locations.log_parts),
        decode_line("awsjobs_exit_url", locations.exit_code),
        *(decode_line(f"awsjobs_env_{i}", env[name]) for i, name in enumerate(names)),
        *(decode_line(f"awsjobs_arg_{i}", arg) for i, arg in enumerate(argv)),
        *FINISH,
        *_LOG_STREAM,
        *_outputs(),
        *_ENDINGS,
        *_TERM,
        *(_spot_watcher(f"{MARKER_DIR}/spot-notice") if watch_spot else []),
        *(_lifetime_watcher(term_before_deadline) if term_before_deadline > 0 else []),
        *_wait_for_mount(READY_MARKER, FAILED_MARKER, ready_wait_seconds),
        "# once per instance: a repeated SendCommand must not run the job twice",
        *once_per_instance(f"{MARKER_DIR}/job-started"),
        'mkdir -p "$AWSJOBS_WORK" "$awsjobs_state"',
        'rm -f "$awsjobs_state/log-stop"',
        "# from here a Stop's SIGTERM ends the job gracefully (build_s3_signal_commands)",
        "trap 'awsjobs_termed=1' TERM",
        f'echo "$$ {_GROUP_OF_SCRIPT}" > "$awsjobs_state/pid"',
        "awsjobs_stop_if_asked",
        *_download(attempt),
        f'cd "$AWSJOBS_WORK" || awsjobs_s3_finish {EXIT_NO_FOLDER}',
        *(f'export {name}="$awsjobs_env_{i}"' for i, name in enumerate(names)),
        'export AWSJOBS_JOB_ID="$awsjobs_job_id"',
        f"export AWSJOBS_ATTEMPT={int(attempt)}",
        "awsjobs_stop_if_asked",
        "# 2. run the job, its log streamed to S3",
        'echo "[awsjobs] job started on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        *_run(argv, watch_spot, term_before_deadline > 0),
        'echo "[awsjobs] exit code $awsjobs_rc at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        "# 3. outputs and the end of the log to S3, then the exit code, then the halt",
        'awsjobs_s3_finish "$awsjobs_rc"',
    ]


def build_s3_signal_commands(job_id: str) -> list[str]:
    """A short AWS-RunShellScript command that ends a job's command gracefully: SIGTERM to the
    job as its script recorded it (`<state>/pid`), so the script uploads the outputs and the
    log, then writes the exit code. Before the job has started, `stop-requested` tells the
    script not to start it. (CancelCommand would not do: the agent kills the command's process
    group with SIGKILL, the script's TERM trap never runs.)"""
    if not JOB_ID.match(job_id):
        raise InvalidRequest(f"not a job id: {job_id!r}")
    return [
        "set -u",
        f"# awsjobs-lab: stop job {job_id} gracefully (files through S3)",
        'PATH="$PATH:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"; export PATH',
        f"awsjobs_state={STATE_ROOT}/{job_id}",
        *_TERM,
        'mkdir -p "$awsjobs_state" && touch "$awsjobs_state/stop-requested"',
        'if [ ! -s "$awsjobs_state/pid" ]; then',
        "  echo 'awsjobs: the job has not started: it will not'",
        "  exit 0",
        "fi",
        'read -r awsjobs_pid awsjobs_group < "$awsjobs_state/pid"',
        'case "${awsjobs_pid:-x}${awsjobs_group:-x}" in *[!0-9]*)',
        '  echo "awsjobs: unreadable $awsjobs_state/pid" >&2',
        "  exit 1 ;;",
        "esac",
        'awsjobs_term "$awsjobs_pid" "$awsjobs_group" && echo "awsjobs: SIGTERM sent to the job"',
    ]
