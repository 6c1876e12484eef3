"""The featurestore blueprint: one feature store shared by two models, offline and online.

``modelyard init --blueprint featurestore DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint featurestore`` runs the application (``_quickstart.py``)
on MovieLens' real ratings (``_data.py``): three views over two entities, two services
sharing a feature (``_definitions.py``), computed by one set of functions for the batch
sources and the stream (``_aggregates.py``); point-in-time training sets beside the naive
join (``_offline.py``), two models trained and registered (``_train.py``); a validated
backfill, materialization and the stream replay (``_pipeline.py``).
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.blueprints.featurestore._config import (
        FeaturestoreSettings,
        check_table,
        parse_settings,
        settings_of,
    )
    from modelyard.blueprints.featurestore._quickstart import quickstart

__all__ = ["FeaturestoreSettings", "check_table", "parse_settings", "quickstart", "settings_of"]

_EXPORTS = {
    "modelyard.blueprints.featurestore._config": [
        "FeaturestoreSettings",
        "check_table",
        "parse_settings",
        "settings_of",
    ],
    "modelyard.blueprints.featurestore._quickstart": ["quickstart"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
