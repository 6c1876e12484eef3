"""The Dockerfile and entrypoint of a model image, as text.

Two stages: the first makes a virtual environment from the wheelhouse alone
(``--no-index``), the second copies just that environment onto a fresh base, so the
wheels (hundreds of MB) never reach a layer of the final image. The server runs as a
non-root user, as PID 1 (the entrypoint ``exec``s it), so ``podman stop`` / ``docker
stop`` send SIGTERM straight to it: it drains in-flight requests and exits.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

from modelyard.release._wheelhouse import platform_tag

VENV_DIR = "/opt/modelyard"
WORKSPACE_DIR = "/srv/modelyard"
CONTAINER_PORT = 8000
USER_ID = 10001

# What serving never reads, removed from the venv before it is copied: pip and setuptools
# (which the venv module puts there; 10 MB with pkg_resources), the test suites
# of installed packages (pandas, scipy, scikit-learn, numpy, pyarrow: about 120 MB), and
# C headers and Cython sources, which only compile extensions against those packages.
_SOURCES = " -o ".join(
    f"-name '{p}'" for p in ("*.pxd", "*.pyx", "*.pxi", "*.h", "*.hpp", "*.c", "*.cc", "*.cpp")
)
_PRUNE = " \\\n && ".join(
    [
        f"find {VENV_DIR}/lib -depth -path '*/site-packages/*' -type d "
        "\\( -name tests -o -name include \\) -exec rm -rf {} +",
        f"find {VENV_DIR}/lib -path '*/site-packages/*' -type f \\( {_SOURCES} \\) -delete",
    ]
)


def _healthcheck_code() -> str:
    return (
        "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + "
        "os.environ.get('MODELYARD_SERVE_PORT', '8000') + '/healthz', timeout=4)"
    )


def _python_guard(python: str) -> str:
    return (
        "import sys; v = '%d.%d' % sys.version_info[:2]; "
        f"sys.exit(0 if v == '{python}' else 'this base image has Python ' + v + "
        f"', and the wheelhouse holds wheels for Python {python}: build FROM an image "
        f"with Python {python} (--base-image python:{python}-slim)')"
    )


def render_dockerfile(base_image: str, python: str, labels: Mapping[str, str]) -> str:
    """The Dockerfile of a context whose wheelhouse was filled for CPython ``python``."""
    label_lines = " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    health = json.dumps([f"{VENV_DIR}/bin/python", "-c", _healthcheck_code()])
    guard = json.dumps(["python3", "-c", _python_guard(python)])
    return f"""\
# Written by 'modelyard build'. It builds with no network: every wheel is in wheelhouse/,
# for CPython {python} on the platform of the machine that wrote it ({platform_tag()}).
ARG BASE_IMAGE={base_image}

FROM ${{BASE_IMAGE}} AS build
# The wheels fit one Python version only: say so plainly instead of failing in pip.
RUN {guard}
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv {VENV_DIR} \\
 && {VENV_DIR}/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \\
      --find-links /tmp/wheelhouse --requirement /tmp/wheelhouse/requirements.txt \\
 && {VENV_DIR}/bin/pip uninstall --yes --disable-pip-version-check pip setuptools \\
 && {_PRUNE}

FROM ${{BASE_IMAGE}}
RUN groupadd --system --gid {USER_ID} modelyard \\
 && useradd --system --uid {USER_ID} --gid {USER_ID} --no-create-home \\
      --home-dir {WORKSPACE_DIR} --shell /usr/sbin/nologin modelyard
COPY --from=build {VENV_DIR} {VENV_DIR}
# The server writes its prediction log and SQLite journal here: the user must own it.
COPY --chown={USER_ID}:{USER_ID} workspace/ {WORKSPACE_DIR}/
COPY modelyard-build.json {WORKSPACE_DIR}/modelyard-build.json
COPY entrypoint.sh /usr/local/bin/modelyard-entrypoint
ENV PATH="{VENV_DIR}/bin:$PATH" \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    MODELYARD_SERVE_HOST=0.0.0.0 \\
    MODELYARD_SERVE_PORT={CONTAINER_PORT}
USER {USER_ID}:{USER_ID}
WORKDIR {WORKSPACE_DIR}
EXPOSE {CONTAINER_PORT}
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD {health}
LABEL {label_lines}
ENTRYPOINT ["/usr/local/bin/modelyard-entrypoint"]
"""


def render_entrypoint(ref: str) -> str:
    """The script the image runs: ``modelyard serve REF`` plus any arguments given."""
    return f"""\
#!/bin/sh
# Serves {ref} from the workspace baked into this image.
# 'exec' makes the server PID 1, so the SIGTERM of 'podman stop' / 'docker stop'
# reaches it: it drains in-flight requests, then exits.
# Arguments after the image name are passed on: --workers 4, --grpc-port 9000, …
set -eu
exec {VENV_DIR}/bin/modelyard serve {shlex.quote(ref)} --workspace {WORKSPACE_DIR} "$@"
"""
