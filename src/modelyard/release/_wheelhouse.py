"""The wheelhouse of an image: every distribution it installs, as wheels, at the versions
installed here.

An image must run the code that runs in this environment, and build with no network
(``pip install --no-index --find-links wheelhouse``). So each requirement is pinned to
its installed version (``importlib.metadata``), pip resolves the rest under constraints
that pin every installed distribution, and the wheels wait in a cache folder: a
second build resolves from that folder alone and downloads nothing. modelyard itself
is built into a wheel from its source tree (cached by the tree's content), or pinned
like the others when it was installed from a package index.

The wheels fit this interpreter (CPython minor version, platform); the image's Python
must be the same minor version, which the build checks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from email.message import Message
from email.parser import Parser
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import BackendUnavailableError, ConfigError

# Modules each built-in flavor imports to load a model; the distributions that provide
# them join the wheelhouse. A user's own flavor names its packages with ``--with``.
FLAVOR_MODULES: dict[str, tuple[str, ...]] = {
    "sklearn": ("sklearn", "joblib"),
    "python": ("cloudpickle",),
    "torch": ("torch", "cloudpickle"),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost",),
    "text": ("tokenizers",),
    "image": ("torch", "cloudpickle", "PIL"),
}
ONNX_MODULES = ("onnxruntime",)
# A text model served by PyTorch also needs the encoder's code; served by onnxruntime
# it needs neither torch nor transformers, which keeps its image about 1 GB smaller.
TEXT_TORCH_MODULES = ("torch", "transformers", "safetensors")

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?[^;]*(?P<marker>;.*)?$"
)
# Junk that a source tree collects and a wheel never holds.
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
_PROJECT_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in")

Progress = Callable[[str], None]


def python_tag() -> str:
    """The CPython minor version the wheels are for, e.g. ``"3.11"``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def platform_tag() -> str:
    return sysconfig.get_platform()


def default_cache(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/modelyard/wheelhouse`` (``~/.cache/…`` by default)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelyard" / "wheelhouse"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        raise ConfigError(
            f"the image needs the distribution {name!r}, which is not installed here; "
            f"install it (pip install {name}) and build again"
        ) from None


def pinned(requirement: str) -> str | None:
    """``uvicorn[standard]>=0.27`` → ``uvicorn[standard]==0.30.1``; None for an extra's."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ConfigError(f"cannot read the requirement {requirement!r}")
    marker = match["marker"] or ""
    if "extra" in marker:
        return None
    name = match["name"]
    if marker:
        try:
            md.version(name)
        except md.PackageNotFoundError:
            # Not installed, and only wanted where its marker holds (another Python or
            # platform, say): this environment, and so the image, runs without it.
            return None
    return f"{name}{match['extras'] or ''}=={installed_version(name)}{marker}"


def distributions_of(modules: Iterable[str]) -> list[str]:
    """The installed distributions that provide ``modules`` (``sklearn`` → scikit-learn)."""
    providers = md.packages_distributions()
    found: list[str] = []
    for module in modules:
        names = providers.get(module)
        if not names:
            raise ConfigError(
                f"the model needs the module '{module}', which is not installed here; "
                "install the package that provides it and build again"
            )
        found += [n for n in names if normalize(n) != "modelyard"]
    return found


def requirements(own: Sequence[str], extra_distributions: Sequence[str]) -> list[str]:
    """modelyard's run-time requirements ``own`` plus ``extra_distributions``, each pinned."""
    lines = [p for r in own if (p := pinned(r)) is not None]
    have = {normalize(line.split("[")[0].split("=")[0]) for line in lines}
    for name in extra_distributions:
        if normalize(name) not in have:
            have.add(normalize(name))
            lines.append(f"{name}=={installed_version(name)}")
    return lines


def constraints() -> list[str]:
    """Every installed distribution at its version, except ones installed from a path."""
    pins: dict[str, str] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name or normalize(name) == "modelyard" or dist.read_text("direct_url.json"):
            continue
        pins[normalize(name)] = f"{normalize(name)}=={dist.version}"
    return sorted(pins.values())


def fill(
    dest: Path,
    extra_distributions: Sequence[str],
    cache: Path,
    *,
    progress: Progress | None = None,
) -> list[str]:
    """Put modelyard and ``extra_distributions``, with every dependency, as wheels in ``dest``.

    Returns ``name==version`` for every wheel, which ``dest/requirements.txt`` also lists.
    """
    say = progress or (lambda _text: None)
    _check_pip()
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    own_line, own_links, own_requires = _modelyard(cache, say)
    lines = requirements(own_requires, extra_distributions)
    with tempfile.TemporaryDirectory(prefix="modelyard-pip-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(lines) + "\n")
        con = Path(tmp) / "constraints.txt"
        con.write_text("\n".join(constraints()) + "\n")
        everything = Path(tmp) / "everything.txt"
        everything.write_text(f"{own_line}\n-r {req}\n")
        links = [f"--find-links={wheels}", *(f"--find-links={d}" for d in own_links)]
        report_path = Path(tmp) / "report.json"
        resolve = [
            *("install", "--dry-run", "--ignore-installed", "--no-index", "--only-binary=:all:"),
            *(*links, "-r", str(everything), "-c", str(con), "--report", str(report_path)),
        ]
        say("resolving the wheelhouse from the cache")
        if _pip(resolve, check=False).returncode != 0:
            say(f"downloading the missing wheels into {wheels} (later builds reuse them)")
            fetch = ["wheel", "--prefer-binary", f"--wheel-dir={wheels}", links[0]]
            _pip([*fetch, "-r", str(req), "-c", str(con)])
            _pip(resolve)
        report = json.loads(report_path.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    pins: list[str] = []
    for item in report["install"]:
        source = Path(unquote(urlparse(item["download_info"]["url"]).path))
        _link_or_copy(source, dest / source.name)
        meta = item["metadata"]
        pins.append(f"{normalize(meta['name'])}=={meta['version']}")
    pins.sort()
    (dest / "requirements.txt").write_text("\n".join(pins) + "\n")
    return pins


def _modelyard(cache: Path, say: Progress) -> tuple[str, list[Path], list[str]]:
    """modelyard's requirement line, the folder of its wheel if built here, and its
    run-time requirements (from the wheel: the source may have moved past the install)."""
    dist = md.distribution("modelyard")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if not direct.get("url", "").startswith("file://"):
        # Installed from an index: the cache downloads that very release.
        return f"modelyard=={dist.version}", [], list(dist.requires or [])
    source = Path(unquote(urlparse(direct["url"]).path))
    if not (source / "pyproject.toml").is_file():
        raise ConfigError(
            f"modelyard was installed from {source}, which no longer holds its source; "
            "reinstall modelyard (pip install modelyard) and build again"
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-src-") as tmp:
        # A copy of the files a wheel is made of: building in place would leave build/
        # and *.egg-info in the user's tree, and the copy's digest names the wheel.
        tree = Path(tmp) / "src"
        digest = _copy_source(source, tree)
        folder = cache / "modelyard" / digest[:16]
        if not any(folder.glob("modelyard-*.whl")):
            say("building the modelyard wheel from its source tree")
            staging = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            # Without isolation when setuptools is here: no download, and much faster.
            local = importlib.util.find_spec("setuptools") is not None
            isolation = ["--no-build-isolation"] if local else []
            _pip(["wheel", "--no-deps", *isolation, f"--wheel-dir={staging}", str(tree)])
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
    wheel = next(folder.glob("modelyard-*.whl"))
    return f"modelyard=={_wheel_version(wheel)}", [folder], _wheel_requires(wheel)


def _wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def _wheel_version(wheel: Path) -> str:
    return str(_wheel_metadata(wheel)["Version"])


def _wheel_requires(wheel: Path) -> list[str]:
    return [str(r) for r in _wheel_metadata(wheel).get_all("Requires-Dist") or []]


def _copy_source(source: Path, tree: Path) -> str:
    """Copy the project files and the package folder to ``tree``; return their digest."""
    package = Path(__file__).resolve().parents[1]  # …/modelyard
    tree.mkdir(parents=True)
    names = [
        *_PROJECT_FILES,
        *(p.name for p in source.glob("README*")),
        *(p.name for p in source.glob("LICENSE*")),
    ]
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, tree / name)
    # The running code goes where pyproject.toml looks for it (src/modelyard), whether it
    # runs from that tree (editable) or from site-packages (installed from the folder,
    # perhaps into a venv inside it): the image then runs exactly what runs here.
    rel = Path("src") / package.name
    shutil.copytree(package, tree / rel, ignore=_NOT_SOURCE)
    h = hashlib.sha256()
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        h.update(path.relative_to(tree).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs nothing when the cache and the context share a file system.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_pip() -> None:
    if importlib.util.find_spec("pip") is None:
        raise BackendUnavailableError(
            f"pip is not installed in {sys.prefix}; the wheelhouse is filled with it: "
            f"run '{sys.executable} -m ensurepip' and build again"
        )


def _pip(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BackendUnavailableError(
            f"pip {args[0]} failed while filling the wheelhouse: {_pip_reason(proc.stderr)}; "
            "fix that (is the package index reachable? see PIP_INDEX_URL) and build again"
        )
    return proc


def _pip_reason(stderr: str) -> str:
    """The line of pip's output that says why: a conflict's cause, else its first error."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if "The conflict is caused by:" in lines:
        start = lines.index("The conflict is caused by:") + 1
        cause = itertools.takewhile(lambda ln: not ln.startswith("To fix"), lines[start:])
        return "; ".join(cause)
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[0].removeprefix("ERROR: ")
