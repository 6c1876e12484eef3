"""A container image of one registered model: a hermetic build context, then the image.

The context holds everything the image needs, so that it builds with no network and
anyone can rebuild it later from the folder alone:

    Dockerfile             two stages: a venv filled from the wheelhouse, then a slim
                           run stage with a non-root user, HEALTHCHECK and STOPSIGNAL
    wheelhouse/            every wheel at the version installed here + requirements.txt
    workspace/             a workspace holding only this model version and its alias
    entrypoint.sh          execs ``modelyard serve`` so the server is PID 1 and gets SIGTERM
    modelyard-build.json   what was built: model, version, digest, base image, Python, wheels

Everything is checked before anything is written, the context is written to a
temporary sibling folder and renamed at the end, so a failure leaves no half context.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, ConflictError, InvalidInputError
from modelyard.registry import ModelRef, ModelVersion, export_version, flavor_settings
from modelyard.release import _engine, _wheelhouse
from modelyard.release._dockerfile import (
    CONTAINER_PORT,
    WORKSPACE_DIR,
    render_dockerfile,
    render_entrypoint,
)

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

DEFAULT_BASE_IMAGE = f"python:{_wheelhouse.python_tag()}-slim"
BUILD_FILE = "modelyard-build.json"

Progress = Callable[[str], None]
# A repository (lower case, optionally behind a registry host:port) and an optional tag.
_TAG = re.compile(r"[a-z0-9]+(?:[._\-/:][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})?")


@dataclass(frozen=True)
class BuildContext:
    """A written build context and, once built, the image made from it."""

    folder: Path
    model: ModelVersion
    ref: str
    base_image: str
    python: str
    wheels: tuple[str, ...]
    image: str | None = None
    engine: str | None = None
    port: int = CONTAINER_PORT


@dataclass(frozen=True)
class _Plan:
    """What a context will hold, after every check and before any write."""

    ws: Workspace
    ref: str
    version: ModelVersion
    out: Path
    base_image: str
    force: bool
    distributions: list[str]


def write_context(
    ws: Workspace,
    ref: str,
    out: str | Path,
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    force: bool = False,
    wheelhouse: str | Path | None = None,
    packages: Sequence[str] = (),
    progress: Progress | None = None,
) -> BuildContext:
    """Write the build context of ``ref`` (``NAME@ALIAS`` or ``NAME/VERSION``) to ``out``.

    ``wheelhouse``: the cache folder of wheels (default ``~/.cache/modelyard/wheelhouse``).
    ``packages``: more installed distributions the model needs (a python-flavor model's).
    """
    plan = _plan(ws, ref, Path(out), base_image, force, packages)
    return _write(plan, _cache(wheelhouse), progress)


def build_image(
    ws: Workspace,
    ref: str,
    out: str | Path,
    *,
    tag: str,
    base_image: str = DEFAULT_BASE_IMAGE,
    force: bool = False,
    wheelhouse: str | Path | None = None,
    packages: Sequence[str] = (),
    no_cache: bool = False,
    progress: Progress | None = None,
    on_output: Callable[[str], None] | None = None,
) -> BuildContext:
    """Write the context of ``ref`` to ``out``, then build it as ``tag`` with podman or
    docker (whichever works; ``BuildContext.engine`` says which).

    ``no_cache``: build every layer afresh instead of reusing the engine's layer cache.
    """
    say = progress or (lambda _text: None)
    _check_tag(tag)
    plan = _plan(ws, ref, Path(out), base_image, force, packages)
    engine = _engine.detect_engine()
    say(f"checking the Python of {base_image} with {engine.name}")
    _check_python(base_image, _engine.base_python(engine, base_image))
    context = _write(plan, _cache(wheelhouse), say)
    say(f"building {tag} with {engine.name}")
    _engine.build(engine, context.folder, tag, no_cache=no_cache, on_output=on_output)
    return replace(context, image=tag, engine=engine.name)


# -- checks ------------------------------------------------------------------------------
def _plan(
    ws: Workspace, ref: str, out: Path, base_image: str, force: bool, packages: Sequence[str]
) -> _Plan:
    parsed = ModelRef.parse(ref)
    version = ws.registry.get(parsed)
    if version.features is not None:
        raise InvalidInputError(
            f"{parsed} reads online features from the feature service "
            f"'{version.features.service}', which an image cannot carry; serve it with "
            "'modelyard serve' beside its online store, or register a version without "
            "features= whose requests carry every input"
        )
    if not base_image or any(c.isspace() for c in base_image):
        raise InvalidInputError(f"--base-image {base_image!r} is not an image name")
    _check_out(ws, out, force)
    modules = _wheelhouse.FLAVOR_MODULES.get(version.flavor)
    if modules is None and not packages:
        raise ConfigError(
            f"{parsed} has the flavor '{version.flavor}', and the image builder does not "
            "know which packages it needs; name them with --with PACKAGE"
        )
    modules = modules or ()
    runtime = str(flavor_settings(ws.registry, version).get("runtime", ""))
    if runtime.startswith("onnxruntime"):
        modules = (*modules, *_wheelhouse.ONNX_MODULES)
    elif version.flavor == "text":
        modules = (*modules, *_wheelhouse.TEXT_TORCH_MODULES)
    for name in packages:
        _wheelhouse.installed_version(name)  # a name that is not installed fails here
    distributions = [*_wheelhouse.distributions_of(modules), *packages]
    return _Plan(ws, str(parsed), version, out, base_image, force, distributions)


def _check_out(ws: Workspace, out: Path, force: bool) -> None:
    target = out.resolve()
    if target.exists() and not target.is_dir():
        raise ConflictError(f"output {out} is a file; pass a folder for the build context")
    root = ws.config.root.resolve()
    if target == root or target in root.parents:
        raise ConflictError(
            f"output folder {out} holds the workspace {root}; choose a folder of its own"
        )
    if target.exists() and any(target.iterdir()) and not force:
        raise ConflictError(
            f"output folder {out} is not empty; pass --force to replace it, "
            "or choose another folder"
        )


def _check_python(base_image: str, found: str) -> None:
    want = _wheelhouse.python_tag()
    if found != want:
        raise ConfigError(
            f"the base image {base_image} has Python {found}, and the wheelhouse is built "
            f"for Python {want} (this environment's); pass --base-image python:{want}-slim, "
            f"or run 'modelyard build' from a Python {found} environment"
        )


def _check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise InvalidInputError(
            f"--image {tag!r} is not an image name; use lower case letters, digits and "
            "'.', '_', '-', '/', then an optional ':TAG', e.g. 'localhost/churn:1'"
        )


def _cache(wheelhouse: str | Path | None) -> Path:
    return Path(wheelhouse) if wheelhouse is not None else _wheelhouse.default_cache()


# -- writing -----------------------------------------------------------------------------
def _write(plan: _Plan, cache: Path, progress: Progress | None) -> BuildContext:
    say = progress or (lambda _text: None)
    out = plan.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir()
    try:
        say(f"copying {plan.ref} (version {plan.version.version}) into its own workspace")
        _export(plan, staging / "workspace")
        say("filling the wheelhouse")
        wheels = _wheelhouse.fill(staging / "wheelhouse", plan.distributions, cache, progress=say)
        python = _wheelhouse.python_tag()
        labels = {
            "org.opencontainers.image.title": f"modelyard {plan.ref}",
            "io.modelyard.model": plan.version.name,
            "io.modelyard.version": str(plan.version.version),
            "io.modelyard.artifact": plan.version.artifact,
            "io.modelyard.python": python,
        }
        (staging / "Dockerfile").write_text(render_dockerfile(plan.base_image, python, labels))
        entrypoint = staging / "entrypoint.sh"
        entrypoint.write_text(render_entrypoint(plan.ref))
        entrypoint.chmod(0o755)
        (staging / BUILD_FILE).write_text(
            json.dumps(_manifest(plan, python, wheels), indent=2, sort_keys=True) + "\n"
        )
        _replace(staging, out, plan.force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildContext(out, plan.version, plan.ref, plan.base_image, python, tuple(wheels))


def _export(plan: _Plan, folder: Path) -> None:
    from modelyard.workspace import Workspace

    # environ={}: the user's MODELYARD_* (a PostgreSQL URL, say) must not redirect the copy.
    with Workspace.init(folder, environ={}) as copy:
        export_version(plan.ws.registry, plan.ref, copy.registry)
    for lock in (folder / ".modelyard").glob("*.lock"):
        lock.unlink()


def _manifest(plan: _Plan, python: str, wheels: Sequence[str]) -> dict[str, Any]:
    from modelyard import __version__

    v = plan.version
    return {
        "model": {
            "name": v.name,
            "version": v.version,
            "ref": plan.ref,
            "flavor": v.flavor,
            "artifact": v.artifact,
            "run_id": v.run_id,
        },
        "base_image": plan.base_image,
        "python": python,
        "platform": _wheelhouse.platform_tag(),
        "modelyard": __version__,
        "wheels": list(wheels),
        "port": CONTAINER_PORT,
        "workspace": WORKSPACE_DIR,
        "created_at": datetime.now(UTC).isoformat(),
    }


def _replace(staging: Path, out: Path, force: bool) -> None:
    if out.exists():
        if any(out.iterdir()) and not force:  # appeared since the check
            raise ConflictError(f"output folder {out} is not empty; pass --force to replace it")
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
