"""The churn blueprint: a daily batch pipeline over real customers, on a simulated calendar.

``modelyard init --blueprint churn DIR`` writes the workspace (``template/``);
``modelyard quickstart --blueprint churn`` lays out 90 days of history, releases the first
model and replays 28 days of the pipeline's schedules (``--simulate-days N`` for more):
features daily (``_daily.py``, ``_features.py``), scores daily with lineage
(``_scores.py``), drift checks daily, training weekly with a cost-tuned threshold
(``_train.py``, ``_threshold.py``) promoted only through the release gates. The jobs are
in ``jobs.py``, each a step of ``_pipeline.py``; ``_replay.py`` drives the scheduler on
the simulated clock. The customers come from a real table mapped by configuration
(``_customers.py``); their events are simulated (``_simulate.py``) or a team's own
(``_events.py``).
"""

from modelyard.blueprints.churn._config import (
    ChurnSettings,
    check_table,
    parse_settings,
    settings_of,
)
from modelyard.blueprints.churn._customers import CANONICAL, CustomerColumns, load_customers
from modelyard.blueprints.churn._events import EventsTable
from modelyard.blueprints.churn._quickstart import quickstart
from modelyard.blueprints.churn._simulate import churn_days, simulate, simulate_day

__all__ = [
    "CANONICAL",
    "ChurnSettings",
    "CustomerColumns",
    "EventsTable",
    "check_table",
    "churn_days",
    "load_customers",
    "parse_settings",
    "quickstart",
    "settings_of",
    "simulate",
    "simulate_day",
]
