#!/usr/bin/env bash
# Build the `mithridate` wheel with maturin and run the Python test suite
# against it, in a scratch virtual environment (python/.venv, gitignored, or
# $MITHRIDATE_PY_VENV). Needs python3 (with venv), a Rust toolchain and PyPI.
#
#   bash python/ci.sh                         # everything, Spark included
#   MITHRIDATE_SKIP_SPARK=1 bash python/ci.sh # without pyspark (no Java needed)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${MITHRIDATE_PY_VENV:-$here/.venv}"
py="${PYTHON:-python3}"

start=$(date +%s)
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pkgs=(maturin pytest numpy pandas flwr)
if [ "${MITHRIDATE_SKIP_SPARK:-0}" != "1" ]; then
  pkgs+=(pyspark)
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}"
echo "python-ci: venv ready in $(( $(date +%s) - start )) s" >&2

dist="$venv/dist"
rm -rf "$dist"
(cd "$here" && "$venv/bin/maturin" build --quiet --interpreter "$venv/bin/python" --out "$dist")
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$dist"/mithridate-*.whl
echo "python-ci: wheel built and installed at $(( $(date +%s) - start )) s" >&2

# Run from outside the source tree so that `import mithridate` is the wheel.
cd "$venv"
"$venv/bin/pytest" -q -p no:cacheprovider "$here/tests"
echo "python-ci: done in $(( $(date +%s) - start )) s" >&2
