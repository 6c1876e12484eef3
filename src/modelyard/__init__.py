"""modelyard: from raw data to a monitored model service, in one package.

>>> import modelyard
>>> ws = modelyard.Workspace(".")
>>> with ws.start_run("train", params={"C": 1.0}) as run: ...
"""

from importlib.metadata import PackageNotFoundError, version

from modelyard.contracts import Field, Schema, fingerprint
from modelyard.errors import ModelyardError
from modelyard.registry import FeatureBinding, Signature
from modelyard.tracking import seed_everything
from modelyard.workspace import Workspace

try:
    __version__ = version("modelyard")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

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
