"""Public names that load on first use (PEP 562), so ``import modelyard`` stays cheap.

A package's ``__init__`` keeps its imports in an ``if TYPE_CHECKING:`` block (what type
checkers and readers see) and hands the same table to ``lazy_exports``; a test checks
that the two agree. The first ``modelyard.serving.create_app`` imports the module that
defines it and caches the value in the package, so later lookups cost nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modelyard.errors import BackendUnavailableError


def lazy_exports(
    package: str,
    exports: Mapping[str, Sequence[str]],
    *,
    extras: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose names live in other modules.

    ``exports``: module -> the names it provides (``"scores as quality_scores"`` renames,
    as an import would). ``extras``: a third-party module that an
    optional extra installs -> that extra's name, so that a missing one is a one-line
    error with its remedy instead of a bare ``ModuleNotFoundError``.
    """
    where: dict[str, tuple[str, str]] = {}
    for module, names in exports.items():
        for entry in names:
            original, _, public = entry.partition(" as ")
            where[public or original] = (module, original)
    needs = dict(extras or {})

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, original = where[name]
        try:
            value = getattr(importlib.import_module(module), original)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").partition(".")[0]
            if top not in needs:
                raise
            raise BackendUnavailableError(
                f"{package}.{name} needs the package '{top}', which is not installed; "
                f"pip install 'modelyard[{needs[top]}]'"
            ) from None
        setattr(sys.modules[package], name, value)  # the next lookup skips __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
