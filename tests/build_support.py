"""Real container images for the tests: podman configured for these machines, a local base
image, the wheel cache, and running an image until it answers.

No container registry is reachable from these machines, so the base image is made
locally (debootstrap of Debian bookworm with python3, imported into podman) the first
time a session needs it, and kept in podman's store for later sessions. Without podman,
or without root for debootstrap, a test that needs them is skipped with the reason,
except under CI=true, where it fails: CI must build and run the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import IN_CI
from server_support import free_port

BASE_IMAGE = "localhost/debian-py:bookworm"
# podman on these machines: the runc runtime, and ulimits it cannot derive by itself.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
"""


def missing(what: str) -> None:
    """Skip the test for want of ``what``; under CI=true, fail it."""
    message = f"{what}; the container image test needs it"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: the image must be built and run)")
    pytest.skip(message)


def run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)


def wheel_cache_folder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The wheel cache, kept between runs in pytest's cache folder when there is one."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        return Path(cache.mkdir("modelyard-wheelhouse"))
    return tmp_path_factory.mktemp("wheelhouse")


@contextmanager
def configured_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman, configured for these machines (CONTAINERS_CONF while the block runs), with
    the local base image (made if podman's store lacks it)."""
    path = shutil.which("podman")
    if path is None:
        missing("podman is not installed (apt-get install podman runc)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTAINERS_CONF", str(conf))
        info = run(path, "info")
        if info.returncode != 0:
            missing(f"'podman info' fails: {info.stderr.strip()[-300:]}")
        if run(path, "image", "exists", BASE_IMAGE).returncode != 0:
            make_base_image(path, tmp_path_factory.mktemp("rootfs") / "rootfs")
        yield path


def make_base_image(podman: str, rootfs: Path) -> None:
    """Debian bookworm with python3 and its venv module, trimmed like the -slim images."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        missing("debootstrap (run as root) makes the base image; apt-get install debootstrap")
    made = run(
        debootstrap,
        "--variant=minbase",
        "--include=python3,python3-venv",
        "bookworm",
        str(rootfs),
        "http://deb.debian.org/debian",
        timeout=900,
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    for junk in (
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        imported = subprocess.run(
            [podman, "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True
        )
    assert tar.returncode == 0 and imported.returncode == 0, imported.stderr
    shutil.rmtree(rootfs, ignore_errors=True)


def dangling(podman: str) -> set[str]:
    """Untagged images (a build's first stage stays behind as one)."""
    return set(run(podman, "images", "--quiet", "--filter", "dangling=true").stdout.split())


def remove_image(podman: str, tag: str, dangling_before: set[str]) -> None:
    """Remove ``tag`` and the untagged images made since ``dangling_before``, only those."""
    run(podman, "rmi", "--force", tag)
    for image in dangling(podman) - dangling_before:
        run(podman, "rmi", "--force", image)


def wait_ready(podman: str, container: str, url: str, timeout_s: float = 120) -> None:
    """Until ``url``/readyz answers 200; else fail with the container's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    logs = run(podman, "logs", container)
    raise AssertionError(f"not ready after {timeout_s} s:\n{logs.stdout[-3000:]}{logs.stderr}")


def run_container(podman: str, tag: str) -> tuple[str, str]:
    """Start ``tag`` detached with its port 8000 on a free local port; (container, URL)
    once it answers /readyz."""
    port = free_port()
    started = run(podman, "run", "--detach", "--publish", f"127.0.0.1:{port}:8000", tag)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(podman, container, url)
    except BaseException:
        run(podman, "rm", "--force", container)
        raise
    return container, url


def container_key(podman: str, container: str, role: str = "predictor") -> dict[str, str]:
    """Headers with a new API key made inside ``container``: the image binds 0.0.0.0, so
    its server requires one, and the workspace baked into it has none."""
    made = run(
        podman, "exec", container, "/opt/modelyard/bin/modelyard", "keys", "create",
        "--role", role, "-w", "/srv/modelyard",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}
