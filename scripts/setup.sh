#!/usr/bin/env bash
# Installs everything awsjobs-lab needs into ./.venv, building the JupyterLab extension.
# Sourced by start.sh and test.sh; safe to run again (it only does what is missing or stale).
#   AWSJOBS_SETUP_TEST=1  also install the test tools (browser, shellcheck, R with rmarkdown and
#                         pandoc, Python test extras)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

say() { printf '\n==> %s\n' "$*"; }

apt_install() {
  # Only Debian-family machines; elsewhere the user installs these by hand (README says which).
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Please install: ${missing[*]}" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "Installing system packages: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
command -v node >/dev/null 2>&1 || apt_install nodejs npm
if [ "${AWSJOBS_SETUP_TEST:-0}" = "1" ]; then
  apt_install chromium shellcheck
  # R, R Markdown (with jsonlite, its dependency) and pandoc: the tests run .R and .Rmd jobs.
  apt_install r-base-core r-cran-rmarkdown pandoc
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "Creating the virtual environment in .venv"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# Build tools first, so the editable install can skip build isolation (much faster, offline-safe).
"$VENV/bin/python" -m pip install -q "hatchling>=1.5" "hatch-nodejs-version>=0.3.2" \
  "hatch-jupyter-builder>=0.5" "jupyterlab>=4.2,<5" editables

extras="dev"
[ "${AWSJOBS_SETUP_TEST:-0}" = "1" ] && extras="dev,test"
say "Installing awsjobs-lab (editable, with the JupyterLab extension) and its [$extras] extras"
export PATH="$VENV/bin:$PATH"
"$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[$extras]"

# The editable build links the extension into the venv only through this step.
"$VENV/bin/jupyter" labextension develop --overwrite . >/dev/null
"$VENV/bin/jupyter" server extension enable --sys-prefix awsjobs_lab >/dev/null
