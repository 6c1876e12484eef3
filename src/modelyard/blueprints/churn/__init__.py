"""The churn blueprint: a daily batch pipeline over real customers, on a simulated calendar.

``modelyard init --blueprint churn DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint churn`` lays out 181 days of history, releases the first
model and replays 28 days of the pipeline's schedules (``--simulate-days N`` for more):
features daily (``_daily.py``, ``_features.py``), scores daily with lineage
(``_scores.py``), drift checks daily, training weekly with a cost-tuned threshold
(``_train.py``, ``_threshold.py``) promoted only through the release gates. The jobs are
in ``jobs.py``, each a step of ``_pipeline.py``; ``_replay.py`` drives the scheduler on
the simulated clock. The customers come from a real table mapped by configuration
(``_customers.py``); their events are simulated (``_simulate.py``) or a team's own
(``_events.py``). Names load on first use: checking a workspace's ``[blueprint]`` table
reads the settings only, and loading a registered churn model imports no pipeline.
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.blueprints.churn._config import (
        ChurnSettings,
        check_table,
        parse_settings,
        settings_of,
    )
    from modelyard.blueprints.churn._customers import (
        CANONICAL,
        CustomerColumns,
        load_customers,
    )
    from modelyard.blueprints.churn._events import (
        EventsTable,
    )
    from modelyard.blueprints.churn._offer import (
        OfferModel,
    )
    from modelyard.blueprints.churn._quickstart import (
        quickstart,
    )
    from modelyard.blueprints.churn._simulate import (
        churn_days,
        simulate,
        simulate_day,
    )

__all__ = [
    "CANONICAL",
    "ChurnSettings",
    "CustomerColumns",
    "EventsTable",
    "OfferModel",
    "check_table",
    "churn_days",
    "load_customers",
    "parse_settings",
    "quickstart",
    "settings_of",
    "simulate",
    "simulate_day",
]

_EXPORTS = {
    "modelyard.blueprints.churn._config": [
        "ChurnSettings",
        "check_table",
        "parse_settings",
        "settings_of",
    ],
    "modelyard.blueprints.churn._customers": [
        "CANONICAL",
        "CustomerColumns",
        "load_customers",
    ],
    "modelyard.blueprints.churn._events": [
        "EventsTable",
    ],
    "modelyard.blueprints.churn._offer": [
        "OfferModel",
    ],
    "modelyard.blueprints.churn._quickstart": [
        "quickstart",
    ],
    "modelyard.blueprints.churn._simulate": [
        "churn_days",
        "simulate",
        "simulate_day",
    ],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
