"""The container engine that builds an image: podman or docker, whichever works here.

Installed is not enough: a docker CLI without a daemon is common, so an engine counts
only when ``ENGINE info`` succeeds. podman comes first when both work, because it needs
no daemon and no root. Every call is an explicit argument list, never a shell line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelyard.errors import BackendUnavailableError, ConfigError, ModelyardError

EngineName = Literal["podman", "docker"]
ENGINES: tuple[EngineName, ...] = ("podman", "docker")
INFO_TIMEOUT_S = 30


@dataclass(frozen=True)
class Engine:
    """A working container engine: its name and the path of its command."""

    name: EngineName
    path: str

    def build_command(self, context: Path, tag: str, *, no_cache: bool = False) -> list[str]:
        command = [self.path, "build", "--tag", tag, "--file", str(context / "Dockerfile")]
        if no_cache:
            command.append("--no-cache")
        if self.name == "podman":
            # OCI images have no HEALTHCHECK; podman drops it unless told the docker format.
            command += ["--format", "docker"]
        return [*command, str(context)]


def detect_engine(candidates: Sequence[EngineName] = ENGINES) -> Engine:
    """The first of ``candidates`` that is installed and answers ``info``."""
    problems: list[str] = []
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            problems.append(f"{name}: not installed")
            continue
        try:
            proc = subprocess.run(
                [path, "info"], capture_output=True, text=True, timeout=INFO_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{name}: '{name} info' did not answer in {INFO_TIMEOUT_S} s")
            continue
        if proc.returncode == 0:
            return Engine(name, path)
        why = _last_line(proc.stderr or proc.stdout)
        problems.append(f"{name}: '{name} info' failed: {why}")
    raise BackendUnavailableError(
        f"building an image needs podman or docker, and none works here ({'; '.join(problems)}); "
        "install podman or start the docker daemon, or drop --image and build the "
        "written context where an engine runs"
    )


def base_python(engine: Engine, image: str) -> str:
    """The ``MAJOR.MINOR`` of ``python3`` inside ``image`` (pulled if the engine must)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    command = [engine.path, "run", "--rm", "--entrypoint", "python3", image, "-c", code]
    proc = subprocess.run(command, capture_output=True, text=True)
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        raise ConfigError(
            f"cannot run python3 in the base image {image!r} with {engine.name}: "
            f"{_last_line(proc.stderr)}; pass --base-image an image with python3 "
            f"(and its venv module), e.g. python:{sys.version_info[0]}.{sys.version_info[1]}-slim"
        )
    return version


def build(
    engine: Engine,
    context: Path,
    tag: str,
    *,
    no_cache: bool = False,
    on_output: Callable[[str], None] | None = None,
) -> None:
    """Build ``context`` into ``tag``; each line the engine prints goes to ``on_output``."""
    command = engine.build_command(context, tag, no_cache=no_cache)
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if on_output is not None:
                on_output(line.rstrip())
    if proc.returncode != 0:
        why = _last_line("\n".join(tail))
        raise ModelyardError(
            f"{engine.name} build failed (exit {proc.returncode}): {why}; the context in "
            f"{context} is kept: fix the cause and run '{' '.join(command)}'"
        )


def image_size(engine: Engine, tag: str) -> int:
    """The image's size in bytes, as the engine reports it."""
    proc = subprocess.run(
        [engine.path, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ConfigError(f"{engine.name} has no image {tag!r}: {_last_line(proc.stderr)}")
    return int(proc.stdout.strip())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
