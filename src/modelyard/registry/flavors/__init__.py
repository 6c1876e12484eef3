"""Built-in flavors; importing this package registers them."""

from modelyard.registry._flavors import register_flavor
from modelyard.registry.flavors.python import PythonFlavor
from modelyard.registry.flavors.sklearn import SklearnFlavor

register_flavor(PythonFlavor())
register_flavor(SklearnFlavor())

__all__ = ["PythonFlavor", "SklearnFlavor"]
