"""The worker install script, run for real on this machine against stand-ins for the system
commands it calls (dnf, curl, tar, systemctl, rpm, pip, Rscript), writing under a scratch
AWSJOBS_ROOT: its control flow (R optional or required) and its final versions line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from awsjobs_lab.aws import image

FAKE_DNF = """#!/bin/bash
echo "dnf $*" >> "$FAKE_LOG"
for arg in "$@"; do
  case "$arg" in
    R|R-core|R-core-devel|*.rpm) [ "${FAKE_R:-none}" = "dnf" ] || exit 1 ;;
  esac
done
exit 0
"""
FAKE_CURL = """#!/bin/bash
echo "curl $*" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then : > "$2"; fi
  shift
done
"""
FAKE_TAR = """#!/bin/bash
echo "tar $*" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do
  if [ "$1" = "-C" ]; then dest="$2"; fi
  shift
done
mkdir -p "$dest/bin/tools/x86_64"
printf '#!/bin/bash\\necho 1.6.42\\n' > "$dest/bin/quarto"
printf '#!/bin/bash\\necho pandoc\\n' > "$dest/bin/tools/x86_64/pandoc"
chmod +x "$dest/bin/quarto" "$dest/bin/tools/x86_64/pandoc"
"""
FAKE_SYSTEMCTL = '#!/bin/bash\necho "systemctl $*" >> "$FAKE_LOG"\n'
FAKE_RPM = "#!/bin/bash\necho 3.3.1611.0\n"
FAKE_RSCRIPT = """#!/bin/bash
echo "Rscript $*" >> "$FAKE_LOG"
case "$*" in
  *getRversion*) printf '4.4.2' ;;
  *packageVersion*) printf '2.29' ;;
  *install.packages*) [ "${FAKE_RMARKDOWN:-ok}" = "ok" ] ;;
  *library*) [ "${FAKE_RMARKDOWN:-ok}" = "ok" ] ;;
esac
"""
# python: pip and ipykernel installs are logged, everything else is this test's interpreter
# (which has papermill and ipykernel, so the versions line is real).
FAKE_PYTHON = f"""#!/bin/bash
if [ "$1" = "-m" ] && {{ [ "$2" = "pip" ] || [ "$2" = "ipykernel" ]; }}; then
  echo "python $*" >> "$FAKE_LOG"
  exit 0
fi
exec {sys.executable} "$@"
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)


def run_script(
    tmp_path: Path, with_r: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (
        ("dnf", FAKE_DNF),
        ("curl", FAKE_CURL),
        ("tar", FAKE_TAR),
        ("systemctl", FAKE_SYSTEMCTL),
        ("rpm", FAKE_RPM),
        ("fakepython", FAKE_PYTHON),
    ):
        _write(stubs / name, text)
    # No R: an Rscript that prints nothing and fails, shadowing the machine's own (the tests'
    # set-up installs R).
    _write(stubs / "Rscript", FAKE_RSCRIPT if with_r != "none" else "#!/bin/bash\nexit 127\n")
    log = tmp_path / "calls.log"
    log.touch()
    result = subprocess.run(
        ["bash", str(image.INSTALL_SCRIPT)],
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FAKE_LOG": str(log),
            "FAKE_R": with_r,
            "AWSJOBS_ROOT": str(tmp_path / "root"),
            "AWSJOBS_PYTHON": "fakepython",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, log.read_text()


def _versions(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(image.VERSIONS_PREFIX)
    return dict(json.loads(last[len(image.VERSIONS_PREFIX) :]))


def test_full_install_prints_versions(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, with_r="dnf")
    assert result.returncode == 0, result.stdout + result.stderr
    versions = _versions(result.stdout)
    assert image.parse_versions(result.stdout) == versions
    from importlib.metadata import version

    assert versions["papermill"] == version("papermill")
    assert versions["ipykernel"] == version("ipykernel")
    assert versions["r"] == "4.4.2"
    assert versions["rmarkdown"] == "2.29"
    assert versions["quarto"] == "1.6.42"
    assert versions["ssm-agent"] == "3.3.1611.0"
    assert "amazon-efs-utils" in calls and "amazon-ssm-agent" in calls
    assert "python -m pip install --no-cache-dir --upgrade papermill ipykernel" in calls
    assert "python -m ipykernel install --name python3" in calls
    assert "quarto-cli/releases/download/v1.6.42/quarto-1.6.42-linux-amd64.tar.gz" in calls
    assert "systemctl enable amazon-ssm-agent" in calls
    assert "install.packages('rmarkdown'" in calls
    assert "library(rmarkdown); library(jsonlite)" in calls  # a report's parameters need it
    root = tmp_path / "root"
    assert (root / "usr/local/bin/quarto").resolve() == root / "opt/quarto/bin/quarto"
    assert (root / "usr/local/bin/pandoc").exists()


def test_without_r_warns_and_still_succeeds(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, with_r="none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: R or rmarkdown could not be installed" in result.stdout
    assert "cdn.posit.co/r/rhel-9/pkgs/R-4.4.2-1-1.x86_64.rpm" in calls  # the fallback was tried
    versions = _versions(result.stdout)
    assert versions["r"] == "none"
    assert versions["rmarkdown"] == "none"


def test_without_r_fails_when_required(tmp_path: Path) -> None:
    result, _ = run_script(tmp_path, with_r="none", AWSJOBS_REQUIRE_R="1")
    assert result.returncode == 1
    assert "ERROR: R or rmarkdown could not be installed" in result.stdout
    assert image.VERSIONS_PREFIX not in result.stdout


def test_rmarkdown_failure_is_a_warning(tmp_path: Path) -> None:
    result, _ = run_script(tmp_path, with_r="dnf", FAKE_RMARKDOWN="broken")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: R or rmarkdown could not be installed" in result.stdout


def test_skip_r(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, with_r="dnf", AWSJOBS_INSTALL_R="0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "R skipped" in result.stdout
    assert "install.packages" not in calls


def test_gpu_flag_installs_the_nvidia_driver_and_cuda(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, with_r="none", AWSJOBS_INSTALL_R="0", AWSJOBS_GPU="1")
    assert result.returncode == 0, result.stdout + result.stderr
    repo = "https://developer.download.nvidia.com/compute/cuda/repos/amzn2023"
    arch = "sbsa" if os.uname().machine == "aarch64" else os.uname().machine
    assert f"dnf config-manager --add-repo {repo}/{arch}/cuda-amzn2023.repo" in calls
    assert f"kernel-devel-{os.uname().release}" in calls
    assert "dnf module install -y nvidia-driver:open-dkms" in calls
    assert "dnf install -y cuda-toolkit" in calls
    assert (tmp_path / "root/etc/profile.d/cuda.sh").read_text().startswith("export PATH=")
    # No GPU driver loads here: the check fails with a warning and the build goes on.
    assert "WARNING: nvidia-smi failed" in result.stdout
    assert {"nvidia-driver", "cuda"} <= set(_versions(result.stdout))


def test_without_the_gpu_flag_nothing_of_nvidia(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, with_r="none", AWSJOBS_INSTALL_R="0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nvidia" not in calls and "cuda" not in calls
    assert "nvidia-driver" not in _versions(result.stdout)
