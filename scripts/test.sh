#!/usr/bin/env bash
# Runs every check of awsjobs-lab: Python lint/types/tests, TypeScript lint/unit tests, the
# browser tests in Debian's Chromium, and the wheel as a user installs it (scripts/check_wheel.sh).
# Installs what it needs first. Exits non-zero on any failure.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
AWSJOBS_SETUP_TEST=1 bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
export PATH="$ROOT/.venv/bin:$PATH"

passed=0
failed=0
failures=()
step() {
  local name="$1"
  shift
  printf '\n==> %s\n' "$name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

step "ruff check" ruff check .
step "ruff format" ruff format --check .
step "mypy" mypy
step "every endpoint requires authentication" python scripts/check_auth.py
step "pytest" python -m pytest -q -p no:cacheprovider
step "eslint, prettier, stylelint" jlpm lint:check
step "jest" jlpm test
step "browser tests (Galata, Chromium)" bash ui-tests/run.sh
step "sdist and wheel from a clean checkout, installed in a fresh venv" bash scripts/check_wheel.sh

printf '\n'
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
