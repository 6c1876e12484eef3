"""The sentiment blueprint: a real-time text-sentiment API, from labelled texts to a service.

``modelyard init --blueprint sentiment DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint sentiment`` trains the TF-IDF baseline on real product
reviews, registers it as ``sentiment@production`` and serves it. Every variant shares
``train_and_register``: one signature, one holdout, the same measurements.
"""

from modelyard.blueprints._resources import peak_rss_mb
from modelyard.blueprints.sentiment._baseline import BaselineModel, fit_baseline, train_baseline
from modelyard.blueprints.sentiment._config import (
    KEYS,
    SentimentSettings,
    check_table,
    parse_settings,
    settings_of,
)
from modelyard.blueprints.sentiment._data import Corpus, load_corpus
from modelyard.blueprints.sentiment._quickstart import quickstart
from modelyard.blueprints.sentiment._train import (
    held_out_metrics,
    inputs_of,
    service_signature,
    train_and_register,
)

__all__ = [
    "BaselineModel",
    "Corpus",
    "KEYS",
    "SentimentSettings",
    "check_table",
    "fit_baseline",
    "held_out_metrics",
    "inputs_of",
    "load_corpus",
    "parse_settings",
    "peak_rss_mb",
    "quickstart",
    "service_signature",
    "settings_of",
    "train_and_register",
    "train_baseline",
]
