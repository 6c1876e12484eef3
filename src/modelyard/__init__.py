"""modelyard: from raw data to a monitored model service, in one package.

>>> import modelyard
>>> ws = modelyard.Workspace.init("my-project")  # creates it; later: Workspace("my-project")
>>> with ws.start_run("train", params={"C": 1.0}) as run: ...

The names below load on first use: ``import modelyard`` (and every job worker, command
line call and server start) pays only for what it touches.
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.contracts import Field, Schema, fingerprint
    from modelyard.errors import ModelyardError
    from modelyard.registry import FeatureBinding, Signature
    from modelyard.tracking import seed_everything
    from modelyard.workspace import Workspace

    __version__: str

__all__ = [
    "FeatureBinding",
    "Field",
    "ModelyardError",
    "Schema",
    "Signature",
    "Workspace",
    "__version__",
    "fingerprint",
    "seed_everything",
]

_EXPORTS = {
    "modelyard.contracts": ["Field", "Schema", "fingerprint"],
    "modelyard.errors": ["ModelyardError"],
    "modelyard.registry": ["FeatureBinding", "Signature"],
    "modelyard.tracking": ["seed_everything"],
    "modelyard.workspace": ["Workspace"],
    "modelyard._version": ["__version__"],
}

if not TYPE_CHECKING:  # type checkers see the imports above, not an open __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
