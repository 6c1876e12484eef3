"""The recommendations blueprint: a nightly top-N job whose lists a light read API serves.

``modelyard init --blueprint recommendations DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint recommendations`` runs the application
(``_quickstart.py``) on MovieLens' real ratings (``_data.py``): implicit-feedback ALS
beside a popularity baseline, judged on the newest weeks (``_model.py``,
``_metrics.py``); then the nightly job (``jobs.py``, ``_nightly.py``) refits, computes
every user's top-N (``_topn.py``), checks the lists for bias (``_bias.py``) and
publishes them as the night's version, readers switched at once
(``serving/_recommendation_lists.py``).
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.blueprints.recommendations._config import (
        RecommendationsSettings,
        check_table,
        parse_settings,
        settings_of,
    )
    from modelyard.blueprints.recommendations._quickstart import quickstart

__all__ = [
    "RecommendationsSettings",
    "check_table",
    "parse_settings",
    "quickstart",
    "settings_of",
]

_EXPORTS = {
    "modelyard.blueprints.recommendations._config": [
        "RecommendationsSettings",
        "check_table",
        "parse_settings",
        "settings_of",
    ],
    "modelyard.blueprints.recommendations._quickstart": ["quickstart"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
