#!/usr/bin/env bash
# Installs awsjobs-lab into ./.venv and starts JupyterLab with it, on the local backend
# (jobs run on this machine; no AWS account needed). Extra arguments go to `jupyter lab`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
echo
echo "==> Starting JupyterLab. Right-click a notebook or script: Run as job…"
extra=()
# Jupyter refuses to run as root unless told; containers and fresh cloud machines often are root.
[ "$(id -u)" -eq 0 ] && extra+=(--allow-root)
exec "$ROOT/.venv/bin/jupyter" lab "${extra[@]}" "$@"
