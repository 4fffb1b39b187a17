"""The worker's boot script (EC2 user data, a cloud-init shell script).

In this order, so a failure later can never leave an immortal instance:
1. schedule `shutdown -h +N` for the job's maximum lifetime. RunInstances sets
   `InstanceInitiatedShutdownBehavior=terminate`, so this halt *terminates* the instance (R
   awsjobs omitted that: its on-demand instances were left stopped, still billed for disks).
   A reboot loses a scheduled shutdown and user data runs on the first boot only, so the
   absolute deadline (UTC epoch) is also kept on the instance's disk and a cloud-init per-boot
   script re-arms it at every boot, powering off at once when it has passed (`deadline_commands`,
   shared with the image builder);
2. mount the EFS file system at the server root's path (amazon-efs-utils with TLS, installed if
   missing; plain NFS 4.1 as a fallback when no access point is needed), with retries; with
   no file system (storage "s3", `efs_file_system_id` empty) nothing is mounted;
3. write `/run/awsjobs/ready` (or `/run/awsjobs/mount-failed` with the reason). The SSM command
   waits for one of them: the SSM agent may start before cloud-init has mounted EFS.

Plain text: botocore base64-encodes `UserData`. AWS caps user data at 16 KB; we check it here
because moto does not.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from ..errors import InvalidRequest

MAX_USER_DATA_BYTES = 16 * 1024
MARKER_DIR = "/run/awsjobs"
READY_MARKER = f"{MARKER_DIR}/ready"
FAILED_MARKER = f"{MARKER_DIR}/mount-failed"
BOOT_LOG = "/var/log/awsjobs-boot.log"
DEADLINE_FILE = "/var/lib/awsjobs/deadline"  # on the instance's disk: survives a reboot
REARM_SCRIPT = "/var/lib/cloud/scripts/per-boot/awsjobs-deadline"  # cloud-init: every boot
LIFETIME_REASON = "awsjobs: maximum lifetime reached"

# Run at every boot. No deadline file (an image that carries the script): nothing to do; an
# unreadable one: power off, an instance must never outlive a deadline it cannot read.
_REARM = """#!/bin/bash
# awsjobs-lab: re-arm this instance's deadline after a reboot (written by its user data).
exec >>{boot_log} 2>&1
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
deadline=$(cat {deadline_file} 2>/dev/null) || exit 0
case "$deadline" in
  ''|*[!0-9]*) echo "awsjobs: unreadable deadline; powering off"; deadline=0 ;;
esac
left=$((deadline - $(date +%s)))
if [ "$left" -le 0 ]; then
  echo "awsjobs: deadline passed at boot; powering off"
  shutdown -h now {reason}
else
  echo "awsjobs: deadline re-armed, $left s left"
  shutdown -h +$(((left + 59) / 60)) {reason}
fi
"""

_DEADLINE = """shutdown -h +{minutes} {reason}
mkdir -p {deadline_dir} {rearm_dir}
echo $(($(date +%s) + {seconds})) > {deadline_file}.tmp
mv -f {deadline_file}.tmp {deadline_file}
cat > {rearm} <<'AWSJOBS_REARM_EOF'
{rearm_text}AWSJOBS_REARM_EOF
chmod 755 {rearm}
"""

_MOUNT = """# 2. The shared file system, at the same path as on the Jupyter server.
FS_ID={fs_id}
AP_ID={ap_id}
MOUNT_PATH={mount_path}
REGION={region}
USE_IAM={use_iam}
mkdir -p "$MOUNT_PATH"
if ! command -v mount.efs >/dev/null 2>&1; then
  dnf -y -q install amazon-efs-utils || yum -y -q install amazon-efs-utils || true
fi
awsjobs_mount() {{
  if command -v mount.efs >/dev/null 2>&1; then
    opts=tls
    if [ -n "$AP_ID" ]; then opts="$opts,accesspoint=$AP_ID"; fi
    if [ "$USE_IAM" = 1 ]; then opts="$opts,iam"; fi
    mount -t efs -o "$opts" "$FS_ID:/" "$MOUNT_PATH" && return 0
  fi
  if [ -z "$AP_ID" ] && [ "$USE_IAM" != 1 ]; then
    # Fallback without efs-utils: NFS 4.1 to the file system's DNS name (no TLS).
    mount -t nfs4 \\
      -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport \\
      "$FS_ID.efs.$REGION.amazonaws.com:/" "$MOUNT_PATH" && return 0
  fi
  return 1
}}
mounted=0
i=0
while [ "$i" -lt {mount_attempts} ]; do
  if mountpoint -q "$MOUNT_PATH" || awsjobs_mount; then mounted=1; break; fi
  i=$((i + 1))
  sleep 10
done
ready_note="$FS_ID mounted at $MOUNT_PATH"
"""

# Storage "s3": nothing to mount, the job's command fetches its files from the bucket.
_NO_MOUNT = """# 2. No shared file system: the job's command downloads its files from S3.
mounted=1
ready_note="no shared file system (storage s3)"
"""

_TEMPLATE = """#!/bin/bash
# awsjobs-lab worker boot script, job {job_id}
set -u
exec >>{boot_log} 2>&1
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
echo "awsjobs: boot script started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p {marker_dir}

# 1. Maximum lifetime, enforced by the instance itself (shutdown behaviour = terminate),
#    kept on its disk and re-armed at every boot.
{deadline}
{mount}{extra}
# 3. Tell the job's command whether it can run.
if [ "$mounted" = 1 ]; then
  touch {ready}
  echo "awsjobs: $ready_note"
else
  echo "could not mount EFS $FS_ID at $MOUNT_PATH (see {boot_log} on the instance)" > {failed}
  echo "awsjobs: mounting $FS_ID failed"
fi
"""


def deadline_commands(minutes: int, reason: str = LIFETIME_REASON) -> str:
    """Shell lines that halt the instance `minutes` from now, keep that deadline on its disk
    and install the per-boot script that re-arms it after a reboot."""
    q = shlex.quote
    rearm_text = _REARM.format(boot_log=BOOT_LOG, deadline_file=DEADLINE_FILE, reason=q(reason))
    return _DEADLINE.format(
        minutes=int(minutes),
        seconds=int(minutes) * 60,
        reason=q(reason),
        deadline_dir=str(PurePosixPath(DEADLINE_FILE).parent),
        rearm_dir=str(PurePosixPath(REARM_SCRIPT).parent),
        deadline_file=DEADLINE_FILE,
        rearm=REARM_SCRIPT,
        rearm_text=rearm_text,
    )


def forget_deadline_commands() -> str:
    """Shell lines that remove the deadline and its per-boot script (before an image is made
    of the instance: a worker booted from it must not inherit the builder's deadline)."""
    return f"rm -f {REARM_SCRIPT} {DEADLINE_FILE}\n"


def build_user_data(
    *,
    job_id: str,
    lifetime_minutes: int,
    efs_file_system_id: str,
    mount_path: str,
    region: str,
    efs_access_point_id: str = "",
    efs_use_iam: bool = False,
    mount_attempts: int = 30,
    extra_commands: str = "",
) -> str:
    """The boot script for one job's worker. Raises InvalidRequest over AWS's 16 KB cap."""
    if lifetime_minutes < 1:
        raise InvalidRequest("The maximum lifetime must be at least one minute.")
    extra = ""
    if extra_commands.strip():
        extra = (
            "# Site-specific commands (c.EC2Backend.extra_user_data)\n"
            + extra_commands.strip()
            + "\n"
        )
    q = shlex.quote
    mount = _NO_MOUNT
    if efs_file_system_id:
        mount = _MOUNT.format(
            fs_id=q(efs_file_system_id),
            ap_id=q(efs_access_point_id),
            mount_path=q(mount_path),
            region=q(region),
            use_iam=1 if efs_use_iam else 0,
            mount_attempts=int(mount_attempts),
        )
    text = _TEMPLATE.format(
        job_id=re.sub(r"[^A-Za-z0-9_-]", "_", job_id),
        boot_log=BOOT_LOG,
        marker_dir=MARKER_DIR,
        deadline=deadline_commands(lifetime_minutes),
        mount=mount,
        extra=extra,
        ready=READY_MARKER,
        failed=FAILED_MARKER,
    )
    size = len(text.encode("utf-8"))
    if size > MAX_USER_DATA_BYTES:
        raise InvalidRequest(
            f"The worker's user data is {size} bytes; AWS allows at most {MAX_USER_DATA_BYTES} "
            "(shorten c.EC2Backend.extra_user_data)."
        )
    return text
