#!/usr/bin/env bash
# Print the path of a CPython 3.12 interpreter (Slicer 5.12 runs CPython 3.12.10), or fail.
# Looked for in this order: $STOCK_PYTHON, python3.12 on PATH, pyenv's 3.12.x (newest first).
# A different minor version is not Slicer's runtime: with no 3.12 it stops, loudly, and never
# falls back. Used by Testing/stock/setup_venv.sh (the stock-Slicer tier) and `make test-312`.
set -euo pipefail
is_312() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
for candidate in "${STOCK_PYTHON:-}" "$(command -v python3.12 || true)" \
  $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -rV); do
  if is_312 "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done
echo "python312.sh: no Python 3.12 found (Slicer 5.12 runs CPython 3.12.10)." >&2
echo "Install it (e.g. pyenv install 3.12) or set STOCK_PYTHON=/path/to/python3.12." >&2
exit 1
