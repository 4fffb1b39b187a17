"""The SSM `AWS-RunShellScript` command that runs one job on its worker.

The script is POSIX sh (the SSM agent runs it with `sh`). Every value that comes from the user
(paths, argv, environment values) is `shlex.quote`d; nothing is concatenated unquoted. It:

1. waits for the boot script to have mounted EFS (`ready` marker), or fails clearly;
2. refuses to run twice on one instance (a duplicate SendCommand is a no-op);
3. `cd`s to the script's folder, exports the job's environment, runs the runner's argv with
   stdout and stderr *appended* to the log file on EFS;
4. writes `$?` to the job's `exit_code` file atomically (temp file + `mv`): the monitor reads it
   from EFS, with no AWS call per job;
5. `shutdown -h now`: the instance terminates (shutdown behaviour = terminate) even if the
   Jupyter server is gone.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence

from ..errors import InvalidRequest
from ..patterns import ENV_NAME
from .userdata import FAILED_MARKER, MARKER_DIR, READY_MARKER

# Exit codes of our own failures (not the script's).
EXIT_NOT_MOUNTED = 97
EXIT_NO_FOLDER = 96


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
) -> list[str]:
    """The `commands` parameter of AWS-RunShellScript: one list of script lines."""
    if not argv:
        raise InvalidRequest("The job has no command to run.")
    for path in (cwd, log_path, exit_code_path):
        if not posixpath.isabs(path):
            raise InvalidRequest(f"The worker needs absolute paths, got {path!r}.")
    env = dict(env or {})
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise InvalidRequest(f"env: {name!r} is not a valid variable name.")
        if name.upper().startswith("AWSJOBS_"):
            raise InvalidRequest(f"env: {name} is reserved (names starting with AWSJOBS_).")
        if "\0" in value:
            raise InvalidRequest(f"env: the value of {name} contains a NUL character.")
    q = shlex.quote
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)
    halt = "shutdown -h now 'awsjobs: job finished' >/dev/null 2>&1 || true" if shutdown else ":"
    lines = [
        "set -u",
        f"# awsjobs-lab job {tag}",
        'PATH="$PATH:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"; export PATH',
        f"AWSJOBS_LOG={q(log_path)}",
        f"AWSJOBS_EXIT={q(exit_code_path)}",
        "awsjobs_halt() {",
        f"  {halt}",
        "}",
        "awsjobs_finish() {",
        '  printf \'%s\\n\' "$1" > "$AWSJOBS_EXIT.tmp.$$" &&',
        '    mv -f "$AWSJOBS_EXIT.tmp.$$" "$AWSJOBS_EXIT"',
        "  awsjobs_halt",
        '  exit "$1"',
        "}",
        "# 1. wait for the shared file system (mounted by the boot script)",
        "awsjobs_waited=0",
        f"while [ ! -e {q(ready_marker)} ]; do",
        f"  if [ -e {q(failed_marker)} ]; then",
        f"    cat {q(failed_marker)} >&2",
        "    awsjobs_halt",
        f"    exit {EXIT_NOT_MOUNTED}",
        "  fi",
        f'  if [ "$awsjobs_waited" -ge {int(ready_wait_seconds)} ]; then',
        "    echo 'awsjobs: the shared file system was not mounted in time' >&2",
        "    awsjobs_halt",
        f"    exit {EXIT_NOT_MOUNTED}",
        "  fi",
        "  sleep 2",
        "  awsjobs_waited=$((awsjobs_waited + 2))",
        "done",
        "# 2. once per instance: a repeated SendCommand must not run the job twice",
        f"if ! mkdir {q(started_marker)} 2>/dev/null; then",
        "  echo 'awsjobs: this job has already started on this instance' >&2",
        "  exit 0",
        "fi",
        "# 3. run the job in its folder, output appended to its log on the shared file system",
        f"mkdir -p {q(posixpath.dirname(exit_code_path))} {q(posixpath.dirname(log_path))}",
        f"if ! cd {q(cwd)}; then",
        f'  echo "[awsjobs] cannot enter the folder "{q(cwd)} >> "$AWSJOBS_LOG"',
        f"  awsjobs_finish {EXIT_NO_FOLDER}",
        "fi",
    ]
    lines += [f"export {name}={q(value)}" for name, value in sorted(env.items())]
    lines += [
        f"export AWSJOBS_JOB_ID={q(job_id)}",
        'echo "[awsjobs] job started on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        " ".join(q(arg) for arg in argv) + ' >> "$AWSJOBS_LOG" 2>&1 < /dev/null',
        "awsjobs_rc=$?",
        'echo "[awsjobs] exit code $awsjobs_rc at $(date -u +%Y-%m-%dT%H:%M:%SZ)"'
        ' >> "$AWSJOBS_LOG"',
        "# 4. the exit code, atomically, then 5. the instance goes away",
        'awsjobs_finish "$awsjobs_rc"',
    ]
    return lines
