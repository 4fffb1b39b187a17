#!/usr/bin/env bash
# awsjobs-lab worker image: what a job's EC2 instance needs, installed on Amazon Linux 2023.
#
# `awsjobs build-image` runs this script as root on a builder instance (through SSM
# AWS-RunShellScript), then makes an AMI of that instance. Read it, copy it, extend it: add your
# own steps in a separate file passed with `awsjobs build-image --extra-script FILE`.
#
# What it installs:
#   - Python 3 + pip, papermill, ipykernel and a `python3` kernelspec (runs .ipynb and .py jobs)
#   - R + rmarkdown and jsonlite (runs .R and .Rmd jobs, .Rmd parameters) -- optional, see below
#   - Quarto, from its release tarball (runs .qmd jobs; its bundled pandoc serves rmarkdown too)
#   - amazon-efs-utils (the worker mounts the shared EFS file system)
#   - amazon-ssm-agent, enabled (jobs are started through SSM send-command)
#   - with --gpu (or AWSJOBS_GPU=1): the NVIDIA driver (open kernel modules, built by DKMS for
#     the running kernel) and the CUDA toolkit, from NVIDIA's CUDA repository for Amazon Linux
#     2023 (`amzn2023`, x86_64 or sbsa for arm64). `awsjobs build-image --gpu` runs it on a GPU
#     builder (g4dn.xlarge or g5g.xlarge). The open modules serve Turing GPUs and newer (T4,
#     A10G, L4, L40S, A100, H100), not the V100 of p3 instances. Untested on real AWS.
#
# About R: Amazon Linux 2023's own repositories do not reliably carry R, and EPEL is not meant
# for AL2023 (it targets RHEL). So the script tries, in order: `dnf install R-core` / `R` (used
# if the AL2023 repositories have it), then Posit's prebuilt R for RHEL 9, an RPM installed
# under /opt/R/<version> (https://github.com/rstudio/r-builds; AL2023 is close to RHEL 9, but
# not every dependency may resolve). If neither works, R is skipped with a clear warning and the
# image still builds (.R/.Rmd jobs will then fail on it): install R your own way in
# --extra-script (e.g. Posit's portable "manylinux" R builds, which support AL2023).
# AWSJOBS_REQUIRE_R=1 makes a missing R a build failure; AWSJOBS_INSTALL_R=0 skips R.
#
# The last line of output is `AWSJOBS_VERSIONS {json}`: build-image tags the AMI with it.
#
# Settings (environment variables, all optional):
#   AWSJOBS_PYTHON        python package/interpreter name    (default: python3)
#   AWSJOBS_QUARTO_VERSION                                   (default: 1.6.42)
#   AWSJOBS_R_VERSION     Posit R build, used if dnf has no R (default: 4.4.2)
#   AWSJOBS_INSTALL_R     0 to skip R                         (default: 1)
#   AWSJOBS_REQUIRE_R     1 to fail when R cannot be installed (default: 0)
#   AWSJOBS_ROOT          prefix of every path written (default: none; tests use a scratch dir)
#   AWSJOBS_GPU           1: as --gpu                         (default: 0)
#   AWSJOBS_CUDA_REPO     the CUDA repository's base URL      (default: NVIDIA's)
set -euo pipefail

GPU="${AWSJOBS_GPU:-0}"
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    *)
      printf '[awsjobs] unknown option: %s (known: --gpu)\n' "$arg" >&2
      exit 2
      ;;
  esac
done
CUDA_REPO="${AWSJOBS_CUDA_REPO:-https://developer.download.nvidia.com/compute/cuda/repos/amzn2023}"

PYTHON="${AWSJOBS_PYTHON:-python3}"
QUARTO_VERSION="${AWSJOBS_QUARTO_VERSION:-1.6.42}"
R_VERSION="${AWSJOBS_R_VERSION:-4.4.2}"
INSTALL_R="${AWSJOBS_INSTALL_R:-1}"
REQUIRE_R="${AWSJOBS_REQUIRE_R:-0}"
CRAN="https://cloud.r-project.org"
ROOT="${AWSJOBS_ROOT:-}"
QUARTO_DIR="$ROOT/opt/quarto"
BIN_DIR="$ROOT/usr/local/bin"
export PATH="${PATH:-/usr/bin:/bin}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '[awsjobs] %s\n' "$*"; }

log "base packages"
dnf install -y --setopt=install_weak_deps=False \
  "$PYTHON" "$PYTHON-pip" tar gzip findutils which \
  amazon-efs-utils amazon-ssm-agent

log "Python: papermill, ipykernel and the python3 kernel"
"$PYTHON" -m pip install --no-cache-dir --upgrade papermill ipykernel
# System-wide kernelspec (/usr/local/share/jupyter/kernels/python3), so papermill finds it.
"$PYTHON" -m ipykernel install --name python3 --display-name "Python 3"

log "Quarto ${QUARTO_VERSION}"
quarto_url="https://github.com/quarto-dev/quarto-cli/releases/download/v${QUARTO_VERSION}/quarto-${QUARTO_VERSION}-linux-amd64.tar.gz"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 5 -o "$tmp/quarto.tar.gz" "$quarto_url"
rm -rf "$QUARTO_DIR"
mkdir -p "$QUARTO_DIR" "$BIN_DIR"
tar -xzf "$tmp/quarto.tar.gz" -C "$QUARTO_DIR" --strip-components=1
ln -sf "$QUARTO_DIR/bin/quarto" "$BIN_DIR/quarto"
# rmarkdown needs pandoc: use the one bundled with Quarto unless the system has one (looked for
# under AWSJOBS_ROOT, so a test run is not swayed by the machine it runs on).
if [ ! -e "$ROOT/usr/bin/pandoc" ] && [ ! -e "$BIN_DIR/pandoc" ]; then
  quarto_pandoc="$(find "$QUARTO_DIR/bin" -type f -name pandoc | head -n 1)"
  if [ -n "$quarto_pandoc" ]; then
    ln -sf "$quarto_pandoc" "$BIN_DIR/pandoc"
  fi
fi

install_r() {
  if dnf install -y R-core R-core-devel >/dev/null 2>&1 || dnf install -y R >/dev/null 2>&1; then
    log "R from the Amazon Linux repositories"
    return 0
  fi
  log "no R in the Amazon Linux repositories; trying Posit's R ${R_VERSION} build for RHEL 9"
  local rpm_url="https://cdn.posit.co/r/rhel-9/pkgs/R-${R_VERSION}-1-1.x86_64.rpm"
  if curl -fsSL --retry 5 -o "$tmp/R.rpm" "$rpm_url" && dnf install -y "$tmp/R.rpm"; then
    ln -sf "/opt/R/${R_VERSION}/bin/R" "$BIN_DIR/R"
    ln -sf "/opt/R/${R_VERSION}/bin/Rscript" "$BIN_DIR/Rscript"
    return 0
  fi
  return 1
}

install_rmarkdown() {
  # Compilers for the CRAN packages rmarkdown depends on (installed from source).
  dnf install -y --setopt=install_weak_deps=False gcc gcc-c++ make
  Rscript -e "install.packages('rmarkdown', repos = '${CRAN}', Ncpus = parallel::detectCores())" &&
    # jsonlite (a dependency of rmarkdown) turns a report job's parameters into R values.
    Rscript -e "library(rmarkdown); library(jsonlite)" >/dev/null
}

if [ "$INSTALL_R" = "1" ]; then
  log "R and rmarkdown"
  if install_r && install_rmarkdown; then
    log "R and rmarkdown installed"
  elif [ "$REQUIRE_R" = "1" ]; then
    log "ERROR: R or rmarkdown could not be installed (AWSJOBS_REQUIRE_R=1)"
    exit 1
  else
    log "WARNING: R or rmarkdown could not be installed; .R and .Rmd jobs will fail on this image."
    log "WARNING: set AWSJOBS_REQUIRE_R=1 to make this an error, or install R in --extra-script."
  fi
else
  log "R skipped (AWSJOBS_INSTALL_R=0)"
fi

install_gpu() {
  local arch
  arch="$(uname -m)"
  [ "$arch" = "aarch64" ] && arch="sbsa"
  log "NVIDIA driver and CUDA toolkit (${CUDA_REPO}/${arch})"
  # DKMS builds the driver against the running kernel: its headers first.
  dnf install -y --setopt=install_weak_deps=False dkms \
    "kernel-devel-$(uname -r)" "kernel-headers-$(uname -r)" "kernel-modules-extra-$(uname -r)"
  dnf config-manager --add-repo "${CUDA_REPO}/${arch}/cuda-amzn2023.repo"
  dnf clean expire-cache
  dnf module install -y nvidia-driver:open-dkms
  dnf install -y cuda-toolkit
  mkdir -p "$ROOT/etc/profile.d"
  # Written as is: $PATH expands when a login shell reads it.
  # shellcheck disable=SC2016
  echo 'export PATH="/usr/local/cuda/bin:$PATH"' >"$ROOT/etc/profile.d/cuda.sh"
  if ! { modprobe nvidia && nvidia-smi; }; then
    log "WARNING: nvidia-smi failed (is this builder a GPU instance type?)"
  fi
}

if [ "$GPU" = "1" ]; then
  install_gpu
fi

log "SSM agent enabled at boot"
systemctl enable amazon-ssm-agent

# Versions, for the AMI's tags. Each probe prints "none" when the tool is missing.
version_of() {
  "$@" 2>/dev/null | head -n 1 || true
}
r_version="none"
rmarkdown_version="none"
if command -v Rscript >/dev/null 2>&1; then
  r_version="$(version_of Rscript -e 'cat(as.character(getRversion()))')"
  rmarkdown_version="$(version_of Rscript -e 'cat(as.character(packageVersion("rmarkdown")))')"
fi
quarto_version="$(version_of "$BIN_DIR/quarto" --version)"
efs_utils_version="$(version_of rpm -q --qf '%{VERSION}' amazon-efs-utils)"
ssm_agent_version="$(version_of rpm -q --qf '%{VERSION}' amazon-ssm-agent)"
nvidia_version=""
cuda_version=""
if [ "$GPU" = "1" ]; then
  nvidia_version="$(version_of modinfo -F version nvidia)"
  cuda_version="$(/usr/local/cuda/bin/nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || true)"
fi

"$PYTHON" - "$r_version" "$rmarkdown_version" "$quarto_version" "$efs_utils_version" \
  "$ssm_agent_version" "$GPU" "$nvidia_version" "$cuda_version" <<'EOF'
import json
import platform
import sys
from importlib.metadata import version

r, rmarkdown, quarto, efs_utils, ssm_agent, _, nvidia, cuda = (
    v.strip() or "none" for v in sys.argv[1:9]
)
gpu = {"nvidia-driver": nvidia, "cuda": cuda} if sys.argv[6] == "1" else {}
print("AWSJOBS_VERSIONS " + json.dumps({
    **gpu,
    "python": platform.python_version(),
    "papermill": version("papermill"),
    "ipykernel": version("ipykernel"),
    "r": r,
    "rmarkdown": rmarkdown,
    "quarto": quarto,
    "efs-utils": efs_utils,
    "ssm-agent": ssm_agent,
}, sort_keys=True))
EOF
