#!/usr/bin/env bash
# Build the stock-Slicer test tier's venv: the Python packages 3D Slicer 5.12.3 bundles, pinned
# exactly (slicer-5.12.3.txt beside this script), plus only what stands in for Slicer itself
# (slicer-core for MRML, PySide6 for Qt, the harness stubs from Testing/slicer_stubs, pytest).
# Nothing of DICOMPlus is pip-installed: the tests load the module from a CMake install tree.
# No pynetdicom, python-gdcm or pylibjpeg either: those are what the module must ask for.
#
# It also fills <venv>/wheelhouse with `pip download` of Resources/requirements-network.txt and
# Resources/requirements-decoders.txt, so the tier installs them for real (pip install
# --no-index --find-links <venv>/wheelhouse) when the module's pip_ensure asks for them.
#
# Usage: Testing/stock/setup_venv.sh [VENV_DIR]   (default: .venv-stock at the repository root)
# Python: Slicer 5.12 runs CPython 3.12.10. $STOCK_PYTHON, else python3.12 on PATH, else pyenv's
# 3.12.x (Testing/python312.sh); with none of them it stops (a different minor version is not
# Slicer's runtime).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.venv-stock}"
constraints="$here/slicer-5.12.3.txt"
stamp="$venv/.stock-installed"

inputs_digest() {
  cat "$0" "$here/../python312.sh" "$constraints" "$repo/Resources/requirements-network.txt" \
    "$repo/Resources/requirements-decoders.txt" | sha256sum | cut -d' ' -f1
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(inputs_digest)" ]; then
  echo "stock venv $venv is up to date"
  exit 0
fi

python="$("$here/../python312.sh")"
echo "stock venv: $venv from $python ($("$python" -V))"

rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q -c "$constraints" pip

# Slicer's bundle: every pin of the constraints file (Slicer installs them all).
mapfile -t bundle < <(sed -e 's/#.*//' -e 's/==.*//' -e '/^[[:space:]]*$/d' "$constraints")
"${pip[@]}" install -q -c "$constraints" "${bundle[@]}"

# What stands in for Slicer itself. The constraints keep the bundle's versions.
"${pip[@]}" install -q -c "$constraints" slicer-core "vtk==9.6.2" PySide6-Essentials pytest pytest-qt

# The packages the module installs on demand, downloaded now so tests need no network.
rm -rf "$venv/wheelhouse"
"${pip[@]}" download -q -c "$constraints" -d "$venv/wheelhouse" \
  -r "$repo/Resources/requirements-network.txt" -r "$repo/Resources/requirements-decoders.txt"

inputs_digest >"$stamp"
echo "stock venv ready: $venv ($(ls "$venv/wheelhouse" | wc -l) wheels in the wheelhouse)"
