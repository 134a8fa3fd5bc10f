#!/usr/bin/env bash
# The test command (README "Run the tests"): installs everything the tests need, then runs them.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test || exit 1
bash scripts/install-editors.sh || exit 1
.venv/bin/ruff check . || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  status=0
fi
exit "$status"
