#!/usr/bin/env bash
# Creates .venv/ at the repository root and installs dgem-infill into it (idempotent).
# Usage: bash scripts/setup.sh [--test]   (--test adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "dgem-infill needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first, pinned: where a local CPU build of 2.13.0 is offered (as on our CI machines) pip takes
# it; elsewhere it comes from the package index. The project's own range (torch>=2.4) is then met.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  "${pip[@]}" "torch==${TORCH_VERSION:-2.13.0}"
fi
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
stamp=".venv/.installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "${pip[@]}" -e ".$extras"
  touch "$stamp"
fi
echo "dgem-infill is installed in .venv/ ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
