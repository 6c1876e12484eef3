"""Built-in flavors; importing this package registers them.

Later registrations win auto-detection, so the gradient-boosting flavors come after
``sklearn`` (their estimators are scikit-learn estimators too) and ``torch`` after
``python`` (a Module is callable), and ``text`` after ``torch`` (a TextClassifier is a
Module); ``image`` takes an ``ImageClassifier`` only (a wrapper, not a Module). Each
imports its library only when used.
"""

from modelyard.registry._flavors import register_flavor
from modelyard.registry.flavors.image import ImageFlavor
from modelyard.registry.flavors.lightgbm import LightGBMFlavor
from modelyard.registry.flavors.mlflow_model import MlflowFlavor
from modelyard.registry.flavors.python import PythonFlavor
from modelyard.registry.flavors.sklearn import SklearnFlavor
from modelyard.registry.flavors.text import TextFlavor
from modelyard.registry.flavors.torch import TorchFlavor
from modelyard.registry.flavors.xgboost import XGBoostFlavor

register_flavor(PythonFlavor())
register_flavor(SklearnFlavor())
register_flavor(TorchFlavor())
register_flavor(TextFlavor())
register_flavor(ImageFlavor())
register_flavor(LightGBMFlavor())
register_flavor(XGBoostFlavor())
register_flavor(MlflowFlavor())

__all__ = [
    "ImageFlavor",
    "LightGBMFlavor",
    "MlflowFlavor",
    "PythonFlavor",
    "SklearnFlavor",
    "TextFlavor",
    "TorchFlavor",
    "XGBoostFlavor",
]
