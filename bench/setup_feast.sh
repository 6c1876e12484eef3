#!/usr/bin/env bash
# Create bench/.venv-feast with Feast, its DuckDB offline store and the redis client for its
# Redis online store (bench/features.py, bench/online_features.py); idempotent. Feast lives
# only in this separate venv: it is never a dependency of modelyard. FEAST_SPEC overrides
# what is installed (default: the pinned version below).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-feast"
python="${PYTHON:-python3}"
spec="${FEAST_SPEC:-feast[duckdb,redis]==0.67.0}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

check='import feast, duckdb, ibis, redis; from feast.infra.offline_stores.duckdb import DuckDBOfflineStore; print(feast.__version__)'
if version="$("$venv/bin/python" -c "$check" 2>/dev/null)"; then
    echo "feast $version (duckdb offline store, redis) already in $venv"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec"
echo "feast $("$venv/bin/python" -c "$check") (duckdb offline store, redis) installed in $venv"
