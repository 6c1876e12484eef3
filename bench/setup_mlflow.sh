#!/usr/bin/env bash
# Create bench/.venv-mlflow with MLflow for the tracking benchmarks; idempotent.
# MLflow lives only in this separate venv: it is never a dependency of modelyard.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-mlflow"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

if ! "$venv/bin/python" -c "import mlflow" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    # Full mlflow first; fall back to mlflow-skinny (tracking client + SQLAlchemy store)
    # where full mlflow cannot be installed.
    if ! "$venv/bin/python" -m pip install --quiet mlflow; then
        echo "full mlflow failed to install; falling back to mlflow-skinny" >&2
        "$venv/bin/python" -m pip install --quiet mlflow-skinny sqlalchemy alembic
    fi
fi

# psycopg (3) is the driver of `mlflow server --backend-store-uri postgresql+psycopg://…`
# (bench/tracking_server.py), and SQLAlchemy 2.1's default for a plain postgresql:// URL.
if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet "psycopg[binary]"
fi
echo "mlflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)') in $venv"
