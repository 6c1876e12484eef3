"""Registry: models, numbered versions, aliases, signatures, flavors and lineage."""

from modelyard.registry import flavors as _builtin_flavors  # noqa: F401  (registers them)
from modelyard.registry._compat import signature_problems
from modelyard.registry._export import export_version, flavor_settings
from modelyard.registry._flavors import (
    FLAVORS,
    Flavor,
    Predictor,
    detect_flavor,
    get_flavor,
    register_flavor,
)
from modelyard.registry._loaded import LoadedModel
from modelyard.registry._moves import AliasMove
from modelyard.registry._refs import ModelRef, check_name
from modelyard.registry._registry import META_FILE, Registry
from modelyard.registry._signature import Signature
from modelyard.registry._traffic import (
    STALE_AFTER_S,
    TrafficSplit,
    claim_traffic,
    clear_traffic,
    get_traffic,
    set_traffic,
)
from modelyard.registry._versions import (
    FeatureBinding,
    LoggedModel,
    ModelVersion,
    RegisteredModel,
)

__all__ = [
    "AliasMove",
    "FLAVORS",
    "FeatureBinding",
    "Flavor",
    "LoadedModel",
    "LoggedModel",
    "META_FILE",
    "ModelRef",
    "ModelVersion",
    "Predictor",
    "RegisteredModel",
    "Registry",
    "STALE_AFTER_S",
    "Signature",
    "TrafficSplit",
    "check_name",
    "claim_traffic",
    "clear_traffic",
    "detect_flavor",
    "export_version",
    "flavor_settings",
    "get_flavor",
    "get_traffic",
    "register_flavor",
    "set_traffic",
    "signature_problems",
]
