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
from .userdata import FAILED_MARKER, MARKER_DIR, READY_MARKER

WORK_ROOT = "/var/lib/awsjobs/work"  # the instance's disk (the simulator's sandbox moves it)
STATE_ROOT = "/var/lib/awsjobs/state"
LOG_INTERVAL_SECONDS = 3
EXIT_NO_INPUTS = 94
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
    "# Everything the server brings back, then the exit code (local, then S3), then the halt.",
    "awsjobs_s3_finish() {",
    "  awsjobs_stop_streaming",
    "  awsjobs_upload_outputs",
    "  awsjobs_flush_log_all",
    "  for awsjobs_try in 1 2 3 4 5; do",
    '    printf \'%s\\n\' "$1" | aws s3 cp --only-show-errors - "$awsjobs_exit_url" && break',
    "    sleep 2",
    "  done",
    '  awsjobs_finish "$1"',
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


def _run(argv: Sequence[str], watch_spot: bool) -> list[str]:
    """Step 2: the job, the log streamer alongside (and the spot watcher, if asked). TERM is
    trapped by the script (never by the job) so that it lives on to upload what it can."""
    run = " ".join(f'"$awsjobs_arg_{i}"' for i in range(len(argv)))
    lines = [
        "trap 'awsjobs_termed=1' TERM",
        "awsjobs_stream_log &",
        "awsjobs_streamer=$!",
    ]
    if watch_spot:
        lines += ["awsjobs_watch_spot &", "awsjobs_watcher=$!"]
    lines += [f'{run} >> "$AWSJOBS_LOG" 2>&1 < /dev/null', "awsjobs_rc=$?"]
    if watch_spot:
        lines += [
            'kill "$awsjobs_watcher" 2>/dev/null',
            'if [ -e "$awsjobs_notice" ]; then',
            '  echo "[awsjobs] exit code $awsjobs_rc after the spot interruption notice: not'
            ' recorded; this attempt ends when AWS reclaims the instance" >> "$AWSJOBS_LOG"',
            "  awsjobs_stop_streaming",
            "  awsjobs_upload_outputs",
            "  awsjobs_flush_log_all",
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
    ready_wait_seconds: int = 900,
    shutdown: bool = True,
) -> list[str]:
    """The `commands` parameter of AWS-RunShellScript for a job whose files are in S3."""
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
        *(_spot_watcher(f"{MARKER_DIR}/spot-notice") if watch_spot else []),
        *_wait_for_mount(READY_MARKER, FAILED_MARKER, ready_wait_seconds),
        "# once per instance: a repeated SendCommand must not run the job twice",
        *once_per_instance(f"{MARKER_DIR}/job-started"),
        'mkdir -p "$AWSJOBS_WORK" "$awsjobs_state"',
        'rm -f "$awsjobs_state/log-stop"',
        *_download(attempt),
        f'cd "$AWSJOBS_WORK" || awsjobs_s3_finish {EXIT_NO_FOLDER}',
        *(f'export {name}="$awsjobs_env_{i}"' for i, name in enumerate(names)),
        'export AWSJOBS_JOB_ID="$awsjobs_job_id"',
        f"export AWSJOBS_ATTEMPT={int(attempt)}",
        "# 2. run the job, its log streamed to S3",
        'echo "[awsjobs] job started on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        *_run(argv, watch_spot),
        'echo "[awsjobs] exit code $awsjobs_rc at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        "# 3. outputs and the end of the log to S3, then the exit code, then the halt",
        'awsjobs_s3_finish "$awsjobs_rc"',
    ]
