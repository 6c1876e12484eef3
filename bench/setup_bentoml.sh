#!/usr/bin/env bash
# Create bench/.venv-bentoml with BentoML and scikit-learn for bench/serving.py; idempotent.
# BentoML lives only in this separate venv: it is never a dependency of modelyard.
# BENTOML_SPEC overrides what is installed (default: the pinned version below). scikit-learn
# follows the modelyard venv's version when .venv exists, so the pickled model loads as is.
# Also installs wrk (Debian package), the load generator of the concurrency-32 run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv-bentoml"
python="${PYTHON:-python3}"
spec="${BENTOML_SPEC:-bentoml==1.4.40}"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is missing: install it (Debian/Ubuntu: apt-get install -y wrk)" >&2
        exit 1
    fi
fi

sklearn="scikit-learn"
if [ -x "$repo/.venv/bin/python" ]; then
    if v="$("$repo/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null)"; then
        sklearn="scikit-learn==$v"
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

check='import bentoml, sklearn; print(bentoml.__version__, sklearn.__version__)'
if versions="$("$venv/bin/python" -c "$check" 2>/dev/null)"; then
    echo "bentoml, scikit-learn $versions already in $venv"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec" "$sklearn"
echo "bentoml, scikit-learn $("$venv/bin/python" -c "$check") installed in $venv"
