"""One simulated instance's file system and processes, on this machine, without root.

- **Shims first on PATH** stand for the commands that would change the host: `shutdown`,
  `poweroff`, `halt`, `reboot`, `mount`, `mount.efs`, `umount`, `mountpoint`, `systemctl`,
  `dnf`, `yum`; and `aws`, the AWS CLI v2 subset of the app's S3-mode command, done against
  the simulator (`aws_shim.py`). Each appends `name<TAB>args` to `<sandbox>/requests`; the
  simulator reads that file to act (a `shutdown -h now` halts the simulated instance).
  `mount` succeeds only onto the folder standing for EFS (when one is configured) and records
  the mount under `run/`, which `mountpoint -q` consults.
- **A narrow path substitution** moves the absolute system paths the app's scripts use into the
  sandbox: only paths starting with one of `REDIRECTED_PREFIXES`, and only where the prefix
  begins a path (not inside a longer one). `run/` plays tmpfs: a reboot empties it.
- **Processes** run `bash` in their own process group, so a halt or cancel kills everything the
  script started.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

# The absolute paths the app's boot script and SSM command write to, moved into the sandbox.
REDIRECTED_PREFIXES: tuple[str, ...] = (
    "/run/awsjobs",
    "/var/log/awsjobs",
    "/var/lib/awsjobs",
    "/var/lib/cloud/scripts/per-boot",
    "/etc/awsjobs",
)
_REDIRECT = re.compile(r"(?<![\w./~-])(" + "|".join(map(re.escape, REDIRECTED_PREFIXES)) + ")")
PER_BOOT_DIR = "var/lib/cloud/scripts/per-boot"
AWS_SHIM = Path(__file__).with_name("aws_shim.py")

_RECORD = 'printf \'%s\\t%s\\n\' "${0##*/}" "$*" >> "$AWSSIM_SANDBOX/requests"\n'
_MOUNT = """target=""
for arg in "$@"; do target="$arg"; done
if [ -e "$AWSSIM_SANDBOX/mount-fails" ]; then
  echo "mount: simulated failure" >&2; exit 32
fi
if [ -n "${AWSSIM_EFS_ROOT:-}" ] && [ "$target" != "$AWSSIM_EFS_ROOT" ]; then
  echo "mount: $target is not the simulated EFS folder $AWSSIM_EFS_ROOT" >&2; exit 32
fi
sleep "${AWSSIM_MOUNT_SECONDS:-0}"  # clock.mount_seconds: what an EFS mount takes
mkdir -p "$AWSSIM_SANDBOX/run" && printf '%s\\n' "$target" >> "$AWSSIM_SANDBOX/run/mounts"
"""
_MOUNTPOINT = """target=""
for arg in "$@"; do target="$arg"; done
grep -qxF -- "$target" "$AWSSIM_SANDBOX/run/mounts" 2>/dev/null
"""
SHIMS: dict[str, str] = {
    "shutdown": "",
    "poweroff": "",
    "halt": "",
    "reboot": "",
    "systemctl": "",
    "dnf": "",
    "yum": "",
    "umount": "",
    "mount": _MOUNT,
    "mount.efs": _MOUNT,
    "mountpoint": _MOUNTPOINT,
    "aws": f'exec {shlex.quote(sys.executable)} {shlex.quote(str(AWS_SHIM))} "$@"\n',
}


class Sandbox:
    def __init__(
        self, root: Path, efs_root: str | None, mount_fails: bool, endpoint_url: str = ""
    ) -> None:
        self.root = root
        self.requests_read = 0  # bytes of `requests` already handed out
        self.processes: list[subprocess.Popen[bytes]] = []
        for folder in ("bin", "run", "var/log", "var/lib/awsjobs", PER_BOOT_DIR, "agent"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        for name, body in SHIMS.items():
            shim = root / "bin" / name
            shim.write_text("#!/bin/bash\n" + _RECORD + body)
            shim.chmod(0o755)
        if mount_fails:
            (root / "mount-fails").touch()
        self.env = dict(os.environ)
        self.env.update(
            PATH=f"{root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            AWSSIM_SANDBOX=str(root),
            AWSSIM_EFS_ROOT=efs_root or "",
        )
        if endpoint_url:  # the `aws` shim's; a worker never reaches anything else
            self.env["AWS_ENDPOINT_URL"] = endpoint_url

    def s3_upload_dies(self, dies: bool) -> None:
        """The `aws` shim halts the instance in the middle of a recursive upload."""
        marker = self.root / "s3-upload-dies"
        if dies:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def rewrite(self, script: str) -> str:
        """The script with the redirected system paths moved into this sandbox."""
        return _REDIRECT.sub(lambda m: str(self.root) + m.group(1), script)

    def spawn(self, script: str, name: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Run `script` (rewritten) with bash; stdout/stderr to `agent/<name>.out|.err`."""
        path = self.root / "agent" / f"{name}.sh"
        path.write_text(self.rewrite(script))
        out_path, err_path = self.output(name, "out"), self.output(name, "err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(
                ["bash", str(path)],
                cwd=cwd or self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def output(self, name: str, stream: str) -> Path:
        return self.root / "agent" / f"{name}.{stream}"

    def new_requests(self) -> list[tuple[str, str]]:
        """Shim calls since the last look: (command name, its arguments)."""
        path = self.root / "requests"
        try:
            with open(path, "rb") as file:
                file.seek(self.requests_read)
                data = file.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.requests_read += len(complete)
        lines = complete.decode("utf-8", "replace").splitlines()
        return [(line.partition("\t")[0], line.partition("\t")[2]) for line in lines]

    def per_boot_scripts(self) -> list[Path]:
        folder = self.root / PER_BOOT_DIR
        return sorted(p for p in folder.iterdir() if p.is_file() and os.access(p, os.X_OK))

    def kill_all(self) -> None:
        """SIGKILL every process group this sandbox started (the instance went down)."""
        for process in self.processes:
            kill_group(process)
        self.processes = [p for p in self.processes if p.poll() is None]

    def wipe_tmpfs(self) -> None:
        """A reboot: what lived on tmpfs (markers, mounts) is gone."""
        shutil.rmtree(self.root / "run", ignore_errors=True)
        (self.root / "run").mkdir()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=2)
