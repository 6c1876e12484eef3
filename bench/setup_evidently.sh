#!/usr/bin/env bash
# Create bench/.venv-evidently with Evidently, pandas and pyarrow (bench/monitoring.py);
# idempotent. Evidently lives only in this separate venv: it is never a dependency of
# modelyard. Evidently 0.7.23 imports a helper that pandas 3 removed, hence pandas<3.
# EVIDENTLY_SPEC overrides what is installed (default: the pinned versions below).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-evidently"
python="${PYTHON:-python3}"
spec="${EVIDENTLY_SPEC:-evidently==0.7.23 pandas==2.3.3 pyarrow==26.0.1}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

check='import evidently, pandas, pyarrow; from evidently import Report; from evidently.presets import DataDriftPreset; print(evidently.__version__)'
if version="$("$venv/bin/python" -c "$check" 2>/dev/null)"; then
    echo "evidently $version already in $venv"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # the spec is a list of requirements
"$venv/bin/python" -m pip install --quiet $spec
echo "evidently $("$venv/bin/python" -c "$check") installed in $venv"
