#!/usr/bin/env bash
# Builds awsjobs-lab the way it is published and installs it the way a user does:
#   1. the sdist from a clean checkout of HEAD (git archive: only committed files), with the
#      JupyterLab extension built inside, then the wheel FROM that sdist (a file the sdist
#      misses breaks the wheel here, not on a user's machine);
#   2. every file committed under awsjobs_lab/ must be in the wheel (package data by rule);
#   3. the wheel alone in a fresh venv: `jupyter lab` exists, the lab extension and the server
#      extension are enabled and OK, `awsjobs --help` runs.
# Needs ./.venv (scripts/setup.sh). Run alone or from test.sh; exits non-zero on any failure and
# removes its temporary folder either way.
#   bash scripts/check_wheel.sh [OUTDIR]   also keep the checked sdist and wheel in OUTDIR
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-}"
[ -z "$OUTDIR" ] || OUTDIR="$(mkdir -p "$OUTDIR" && cd "$OUTDIR" && pwd)"
PYTHON="$ROOT/.venv/bin/python"
LAB_EXTENSION="awsjobs-lab"
SERVER_EXTENSION="awsjobs_lab"
# One commit for the whole check: others may commit while it runs.
COMMIT="$(git -C "$ROOT" rev-parse HEAD)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/awsjobs-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# A signal ends the script through `exit`, so the EXIT trap cleans up then too.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
# build's and pip's own temporary folders too, so nothing outlives the check even if killed.
export TMPDIR="$WORK/tmp"
mkdir "$TMPDIR"

say() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\ncheck_wheel: FAILED: %s\n' "$*" >&2
  exit 1
}
# jupyter's listings colour "enabled" and "OK" even when not printing to a terminal.
without_colours() { sed 's/\x1b\[[0-9;]*m//g'; }
# Runs a step with its output in a log; shows the log's end only when the step fails.
logged() {
  local log="$WORK/$1.log"
  shift
  "$@" >"$log" 2>&1 || {
    tail -n 60 "$log" >&2
    return 1
  }
}

[ -x "$PYTHON" ] || fail "no ./.venv: run 'bash scripts/setup.sh' first"
"$PYTHON" -m build --version >/dev/null 2>&1 ||
  fail "the 'build' package is missing from ./.venv: run 'bash scripts/setup.sh' (dev extra)"

build_from_clean_checkout() {
  say "Clean checkout of HEAD (${COMMIT:0:7}); uncommitted changes are not built"
  mkdir "$WORK/src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$WORK/src"
  # The extension's npm packages from a copy of this checkout's yarn cache (filled by setup.sh)
  # rather than from the registry again; yarn fetches what it lacks. A copy, because yarn also
  # deletes the cache entries HEAD's yarn.lock does not use, which the working tree may need.
  if [ -d "$ROOT/.yarn/cache" ]; then
    cp -R "$ROOT/.yarn/cache" "$WORK/yarn-cache"
    export YARN_CACHE_FOLDER="$WORK/yarn-cache"
  fi
  say "Building the sdist, then the wheel from it (isolated build environments, as pip does)"
  logged build "$PYTHON" -m build --outdir "$WORK/dist" "$WORK/src" || fail "python -m build"
  SDIST="$(ls "$WORK"/dist/*.tar.gz)"
  WHEEL="$(ls "$WORK"/dist/*.whl)"
  echo "built $(basename "$SDIST") and $(basename "$WHEEL")"
}

check_package_files_in_wheel() {
  say "Every file committed under $SERVER_EXTENSION/ is in the wheel"
  local missing
  missing="$(comm -23 \
    <(git -C "$ROOT" ls-tree -r --name-only "$COMMIT" -- "$SERVER_EXTENSION/" | sort) \
    <("$PYTHON" -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep="\n")' \
      "$WHEEL" | sort))"
  [ -z "$missing" ] || fail "not in the wheel:
$missing"
}

install_into_fresh_venv() {
  say "Installing the wheel into a fresh venv"
  VENV="$WORK/venv"
  python3 -m venv "$VENV"
  logged install "$VENV/bin/python" -m pip install "$WHEEL" || fail "pip install of the wheel"
  # Only the new venv counts: no user-level Jupyter folders, no paths pointing elsewhere.
  export JUPYTER_CONFIG_DIR="$WORK/jupyter/config" JUPYTER_DATA_DIR="$WORK/jupyter/data"
  export JUPYTER_RUNTIME_DIR="$WORK/jupyter/runtime"
  unset JUPYTER_PATH JUPYTER_CONFIG_PATH PYTHONPATH
  cd "$WORK"
}

# Shows `jupyter <listing>` (both listings print to stderr); fails unless the awk program,
# given the venv's folder `dir` and the extension's `name`, finds it enabled and OK there.
check_listing() {
  local listing_words="$1" dir="$2" name="$3" program="$4" listing
  local -a words
  read -ra words <<<"$listing_words"
  say "jupyter $listing_words: $name enabled and OK"
  listing="$("$VENV/bin/jupyter" "${words[@]}" 2>&1 | without_colours)" ||
    fail "jupyter $listing_words"
  printf '%s\n' "$listing"
  awk -v dir="$dir" -v name="$name" "$program" <<<"$listing" ||
    fail "$name is not listed as enabled and OK in $dir"
}

# shellcheck disable=SC2016  # the $ in the awk programs are awk's fields, not the shell's
check_extensions() {
  # A line such as "awsjobs-lab v0.1.0 enabled OK (python, awsjobs-lab)" under the folder.
  check_listing "labextension list" "$VENV/share/jupyter/labextensions" "$LAB_EXTENSION" '
    { sub(/^[ \t]+/, "") }
    /^\// { here = ($0 == dir); next }
    here && $1 == name && $3 == "enabled" && $4 == "OK" { found = 1 }
    END { exit !found }'
  # Under "Config dir: <folder>": "awsjobs_lab enabled", then "awsjobs_lab <version> OK".
  check_listing "server extension list" "$VENV/etc/jupyter" "$SERVER_EXTENSION" '
    { sub(/^[ \t]+/, "") }
    /^Config dir: / { here = (substr($0, 13) == dir); next }
    here && $1 == name && $2 == "enabled" { enabled = 1 }
    here && $1 == name && $3 == "OK" { ok = 1 }
    END { exit !(enabled && ok) }'
}

check_commands() {
  say "jupyter lab --version, awsjobs --help"
  logged lab-version "$VENV/bin/jupyter" lab --version || fail "jupyter lab --version"
  echo "JupyterLab $(cat "$WORK/lab-version.log")"
  logged awsjobs-help "$VENV/bin/awsjobs" --help || fail "awsjobs --help"
  head -n 3 "$WORK/awsjobs-help.log"
}

started=$SECONDS
build_from_clean_checkout
check_package_files_in_wheel
install_into_fresh_venv
check_extensions
check_commands
if [ -n "$OUTDIR" ]; then
  cp "$SDIST" "$WHEEL" "$OUTDIR/"
  echo "kept in $OUTDIR: $(basename "$SDIST") $(basename "$WHEEL")"
fi
say "wheel check passed in $((SECONDS - started)) s"
