"""The SSM `AWS-RunShellScript` command that runs one job on its worker.

The script is POSIX sh (the SSM agent runs it with `sh`). SSM resolves `{{ssm:…}}` and
`{{resolve:…}}` references in a command's parameters before the agent sees them, so no value
that comes from the user (paths, argv, environment values, the job id) is written into the text
as it is: each is sent base64-encoded (`[A-Za-z0-9+/=]`: never a reference, never a quoting
question) and decoded on the worker into a shell variable of ours. The script:

0. decodes the job's values, or fails clearly (no `base64` on the image);
1. waits for the boot script to have mounted EFS (`ready` marker), or fails clearly;
2. refuses to run twice on one instance (a duplicate SendCommand is a no-op);
3. `cd`s to the script's folder, exports the job's environment, runs the runner's argv with
   stdout and stderr *appended* to the log file on EFS;
   On a spot instance a watcher polls instance metadata (IMDSv2 `spot/instance-action`); at the
   two-minute notice it records the notice in the log and sends SIGTERM to the command's process
   group (the job and its children), so the job can checkpoint. The job sees
   `AWSJOBS_ATTEMPT` (1-based: which attempt of the job this instance runs);
4. writes `$?` to the job's `exit_code` file atomically (temp file + `mv`): the monitor reads it
   from EFS, with no AWS call per job. After a spot notice it writes none and waits for AWS to
   reclaim the instance, so the attempt reads as interrupted (and the job is relaunched);
5. `shutdown -h now`: the instance terminates (shutdown behaviour = terminate) even if the
   Jupyter server is gone.
"""

from __future__ import annotations

import base64
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence

from ..errors import InvalidRequest
from ..jobfiles import STARTED_FILE
from ..patterns import ENV_NAME
from .userdata import FAILED_MARKER, MARKER_DIR, READY_MARKER

# Exit codes of our own failures (not the script's).
EXIT_NOT_MOUNTED = 97
EXIT_NO_FOLDER = 96
EXIT_UNDECODABLE = 95
# How often a duplicate command (see below) looks whether the first run has ended.
DUPLICATE_POLL_SECONDS = 2

# Decodes one value into one of our variables. The `.` appended inside the command
# substitution keeps a value's trailing newlines (which `$(…)` would strip).
_DECODER = [
    "awsjobs_decode() {",
    "  awsjobs_value=$(printf '%s' \"$2\" | base64 -d && echo .) || return 1",
    '  eval "$1=\\${awsjobs_value%.}"',
    "}",
    "awsjobs_undecodable() {",
    "  echo 'awsjobs: cannot decode the values of the job (is base64 installed?)' >&2",
    "  awsjobs_halt",
    f"  exit {EXIT_UNDECODABLE}",
    "}",
]


def encode(value: str) -> str:
    """A value as it is written into the command text: base64 of its UTF-8 bytes."""
    return base64.b64encode(value.encode("utf-8", "surrogateescape")).decode("ascii")


def decode_line(variable: str, value: str) -> str:
    """The script line that sets our shell `variable` to `value`, sent encoded."""
    return f"awsjobs_decode {variable} '{encode(value)}' || awsjobs_undecodable"


def check_values(argv: Sequence[str], paths: Sequence[str], env: Mapping[str, str]) -> None:
    """Refuse what the worker could not be given: no command, relative paths, env names that
    are not portable or are ours, NUL characters (no shell variable can hold one)."""
    if not argv:
        raise InvalidRequest("The job has no command to run.")
    for path in paths:
        if not posixpath.isabs(path):
            raise InvalidRequest(f"The worker needs absolute paths, got {path!r}.")
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise InvalidRequest(f"env: {name!r} is not a valid variable name.")
        if name.upper().startswith("AWSJOBS_"):
            raise InvalidRequest(f"env: {name} is reserved (names starting with AWSJOBS_).")
        if "\0" in value:
            raise InvalidRequest(f"env: the value of {name} contains a NUL character.")
    if any("\0" in value for value in [*argv, *paths]):
        raise InvalidRequest("The job's command or paths contain a NUL character.")


# Instance metadata (IMDSv2). The worker's environment may point elsewhere (a test's fake).
IMDS_URL = "http://169.254.169.254/latest"
SPOT_POLL_SECONDS = 5  # AWS suggests checking for the notice every 5 seconds
SPOT_RECLAIM_WAIT_SECONDS = 300  # the notice comes 2 minutes ahead; then record as usual


def _spot_watcher(notice_marker: str) -> list[str]:
    """Shell lines defining `awsjobs_watch_spot`: poll for the spot notice, then record it and
    SIGTERM the command's process group (only the children of the script when the script does
    not lead its group: never anything outside the command)."""
    q = shlex.quote
    return [
        f"awsjobs_notice={q(notice_marker)}",
        'awsjobs_imds="${AWSJOBS_IMDS_URL:-' + IMDS_URL + '}"',
        "awsjobs_watch_spot() {",
        f'  while sleep "${{AWSJOBS_SPOT_POLL_SECONDS:-{SPOT_POLL_SECONDS}}}"; do',
        "    awsjobs_token=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300'"
        ' "$awsjobs_imds/api/token") || continue',
        '    awsjobs_action=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $awsjobs_token"'
        ' "$awsjobs_imds/meta-data/spot/instance-action") || continue',
        '    printf \'%s\\n\' "$awsjobs_action" > "$awsjobs_notice"',
        '    echo "[awsjobs] spot interruption notice at $(date -u +%Y-%m-%dT%H:%M:%SZ):'
        ' $awsjobs_action; SIGTERM sent to the job" >> "$AWSJOBS_LOG"',
        "    awsjobs_group=$(ps -o pgid= -p $$ | tr -d ' ')",
        '    if [ "$awsjobs_group" = "$$" ]; then kill -TERM -- "-$$"; else pkill -TERM -P $$; fi',
        "    return 0",
        "  done",
        "}",
    ]


def _run_job(argv: Sequence[str], watch_spot: bool) -> list[str]:
    """Run the job (output appended to its log); with the spot watcher alongside, if asked.
    The script traps TERM (a handler, not `ignore`: the job keeps the default action), so the
    watcher's signal ends the job and not the script."""
    run = " ".join(f'"$awsjobs_arg_{i}"' for i in range(len(argv)))
    run += ' >> "$AWSJOBS_LOG" 2>&1 < /dev/null'
    if not watch_spot:
        return [run, "awsjobs_rc=$?"]
    return [
        "trap 'awsjobs_termed=1' TERM",
        "awsjobs_watch_spot &",
        "awsjobs_watcher=$!",
        run,
        "awsjobs_rc=$?",
        'kill "$awsjobs_watcher" 2>/dev/null',
        'if [ -e "$awsjobs_notice" ]; then',
        '  echo "[awsjobs] exit code $awsjobs_rc after the spot interruption notice: not'
        ' recorded; this attempt ends when AWS reclaims the instance" >> "$AWSJOBS_LOG"',
        f"  sleep {SPOT_RECLAIM_WAIT_SECONDS}",
        "fi",
    ]


def build_commands(
    *,
    job_id: str,
    argv: Sequence[str],
    cwd: str,
    log_path: str,
    exit_code_path: str,
    env: Mapping[str, str] | None = None,
    ready_marker: str = READY_MARKER,
    failed_marker: str = FAILED_MARKER,
    started_marker: str = f"{MARKER_DIR}/job-started",
    ready_wait_seconds: int = 900,
    shutdown: bool = True,
    attempt: int = 1,
    watch_spot: bool = False,
    notice_marker: str = f"{MARKER_DIR}/spot-notice",
    after_decoding: Sequence[str] = (),
) -> list[str]:
    """The `commands` parameter of AWS-RunShellScript: one list of script lines. `attempt`:
    which attempt of the job (`AWSJOBS_ATTEMPT`); `watch_spot`: a spot instance (the notice
    watcher runs alongside the job); `after_decoding`: lines run once the values are decoded,
    before anything uses them (a scheduled run learns its id at boot: `aws.scheduled_boot`)."""
    env = dict(env or {})
    check_values(argv, (cwd, log_path, exit_code_path), env)
    names = sorted(env)
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)
    halt = "shutdown -h now 'awsjobs: job finished' >/dev/null 2>&1 || true" if shutdown else ":"
    lines = [
        "set -u",
        f"# awsjobs-lab job {tag}",
        'PATH="$PATH:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"; export PATH',
        "awsjobs_halt() {",
        f"  {halt}",
        "}",
        *_DECODER,
        "# 0. the job's values, sent encoded so that SSM takes none of them for a reference",
        decode_line("AWSJOBS_LOG", log_path),
        decode_line("AWSJOBS_EXIT", exit_code_path),
        decode_line("awsjobs_cwd", cwd),
        decode_line("awsjobs_log_dir", posixpath.dirname(log_path)),
        decode_line("awsjobs_exit_dir", posixpath.dirname(exit_code_path)),
        decode_line("awsjobs_job_id", job_id),
        *(decode_line(f"awsjobs_env_{i}", env[name]) for i, name in enumerate(names)),
        *(decode_line(f"awsjobs_arg_{i}", arg) for i, arg in enumerate(argv)),
        *after_decoding,
        *FINISH,
        *(_spot_watcher(notice_marker) if watch_spot else []),
        *_wait_for_mount(ready_marker, failed_marker, ready_wait_seconds),
        "# 2. once per instance: a repeated SendCommand must not run the job twice",
        *once_per_instance(started_marker),
        "# 3. run the job in its folder, output appended to its log on the shared file system",
        'mkdir -p "$awsjobs_exit_dir" "$awsjobs_log_dir"',
        'if ! cd "$awsjobs_cwd"; then',
        '  printf \'[awsjobs] cannot enter the folder %s\\n\' "$awsjobs_cwd" >> "$AWSJOBS_LOG"',
        f"  awsjobs_finish {EXIT_NO_FOLDER}",
        "fi",
        *(f'export {name}="$awsjobs_env_{i}"' for i, name in enumerate(names)),
        'export AWSJOBS_JOB_ID="$awsjobs_job_id"',
        f"export AWSJOBS_ATTEMPT={int(attempt)}",
        # The server's monitor reads this marker: the job's `running` phase begins.
        f'printf \'%s\\n\' "$AWSJOBS_ATTEMPT" > "$awsjobs_exit_dir/{STARTED_FILE}"',
        'echo "[awsjobs] job started on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        *_run_job(argv, watch_spot),
        'echo "[awsjobs] exit code $awsjobs_rc at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        "# 4. the exit code, atomically, then 5. the instance goes away",
        'awsjobs_finish "$awsjobs_rc"',
    ]
    return lines


# `awsjobs_finish CODE`: the exit code to `$AWSJOBS_EXIT` atomically, then the halt.
FINISH = [
    "awsjobs_finish() {",
    '  printf \'%s\\n\' "$1" > "$AWSJOBS_EXIT.tmp.$$" &&',
    '    mv -f "$AWSJOBS_EXIT.tmp.$$" "$AWSJOBS_EXIT"',
    "  awsjobs_halt",
    '  exit "$1"',
    "}",
]


def once_per_instance(started_marker: str) -> list[str]:
    """A second command for the same job (SendCommand retried after a lost answer, by botocore
    or by us) lives as long as the first run and ends with its exit code: the server may have
    recorded either command, and must not judge the job by a copy that ended at once."""
    return [
        f"if ! mkdir {shlex.quote(started_marker)} 2>/dev/null; then",
        "  echo 'awsjobs: this job has already started on this instance; waiting for it' >&2",
        f'  while [ ! -s "$AWSJOBS_EXIT" ]; do sleep {DUPLICATE_POLL_SECONDS}; done',
        '  exit "$(head -n 1 "$AWSJOBS_EXIT")"',
        "fi",
    ]


def _wait_for_mount(ready_marker: str, failed_marker: str, wait_seconds: int) -> list[str]:
    """Step 1: wait for the boot script's `ready` marker; its failure marker ends the job."""
    q = shlex.quote
    return [
        "# 1. wait for the shared file system (mounted by the boot script)",
        "awsjobs_waited=0",
        f"while [ ! -e {q(ready_marker)} ]; do",
        f"  if [ -e {q(failed_marker)} ]; then",
        f"    cat {q(failed_marker)} >&2",
        "    awsjobs_halt",
        f"    exit {EXIT_NOT_MOUNTED}",
        "  fi",
        f'  if [ "$awsjobs_waited" -ge {int(wait_seconds)} ]; then',
        "    echo 'awsjobs: the shared file system was not mounted in time' >&2",
        "    awsjobs_halt",
        f"    exit {EXIT_NOT_MOUNTED}",
        "  fi",
        "  sleep 2",
        "  awsjobs_waited=$((awsjobs_waited + 2))",
        "done",
    ]
