#!/usr/bin/env bash
# Create bench/.venv-granian with granian (a Rust HTTP server for ASGI apps) for
# bench/serving_servers.py; idempotent. granian lives only in this venv: it is never a
# dependency of modelyard.
#
# The venv holds granian alone (and click, which modelyard's venv has at the same version).
# bench/serving_servers.py runs granian with modelyard's own interpreter and puts this venv's
# site-packages in front on PYTHONPATH: modelyard, FastAPI, uvloop and scikit-learn then come
# from the very venv uvicorn runs in, so the two servers differ in the server only, and nothing
# heavy is installed twice. That needs the same Python minor version (granian is a compiled
# wheel), so the venv is made with modelyard's interpreter: .venv/bin/python, or $PYTHON.
# GRANIAN_SPEC overrides what is installed (default: the pinned version below).
# Also installs wrk (Debian package), the load generator of the concurrency-32 run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv-granian"
spec="${GRANIAN_SPEC:-granian==2.8.9}"
python="${PYTHON:-$repo/.venv/bin/python}"
if [ ! -x "$python" ]; then
    echo "no modelyard venv at $repo/.venv: create it, or set PYTHON to the python that runs modelyard" >&2
    exit 1
fi

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is missing: install it (Debian/Ubuntu: apt-get install -y wrk)" >&2
        exit 1
    fi
fi

want="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "$venv/bin/python" ]; then
    have="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$have" != "$want" ]; then  # built for another interpreter: its wheel would not load
        rm -rf "$venv"
    fi
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"  # from inside a venv, this uses that venv's base interpreter
fi

check='import granian; print(granian.__version__)'
if version="$("$venv/bin/python" -c "$check" 2>/dev/null)"; then
    echo "granian $version already in $venv (Python $want)"
    exit 0
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$spec"
echo "granian $("$venv/bin/python" -c "$check") installed in $venv (Python $want)"
