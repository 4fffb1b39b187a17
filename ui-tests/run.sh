#!/usr/bin/env bash
# Browser tests of awsjobs-lab (Galata + Playwright) in Debian's Chromium.
# Installs the ui-tests dependencies, then runs the suite against a real JupyterLab started by
# playwright.config.js (`jlpm start`). Extra arguments go to `playwright test`
# (e.g. `--update-snapshots`). Needs the extension installed (scripts/setup.sh).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
cd "$HERE"

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium
  else
    echo "Chromium not found at $CHROMIUM; install it or set CHROMIUM_PATH" >&2
    exit 1
  fi
fi
export CHROMIUM_PATH="$CHROMIUM"

# Playwright must not try to download browsers (it cannot here); ours is Debian's.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
jlpm install --immutable >/dev/null 2>&1 || jlpm install

export CI="${CI:-1}"
exec jlpm playwright test --workers 1 --retries 1 --reporter list "$@"
