"""Registry: models, numbered versions, aliases, signatures, flavors and lineage."""

from modelyard.registry import flavors as _builtin_flavors  # noqa: F401  (registers them)
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
from modelyard.registry._refs import ModelRef
from modelyard.registry._registry import Registry
from modelyard.registry._signature import Signature
from modelyard.registry._traffic import TrafficSplit, clear_traffic, get_traffic, set_traffic
from modelyard.registry._versions import (
    FeatureBinding,
    LoggedModel,
    ModelVersion,
    RegisteredModel,
)

__all__ = [
    "FLAVORS",
    "FeatureBinding",
    "Flavor",
    "LoadedModel",
    "LoggedModel",
    "ModelRef",
    "ModelVersion",
    "Predictor",
    "RegisteredModel",
    "Registry",
    "Signature",
    "TrafficSplit",
    "clear_traffic",
    "detect_flavor",
    "export_version",
    "flavor_settings",
    "get_flavor",
    "get_traffic",
    "register_flavor",
    "set_traffic",
]
