"""The churn blueprint (issue 25, in progress): a batch pipeline over real customers.

Built so far: its settings (``_config.py``); the customer table mapped by configuration
(``_customers.py``); the seeded daily event log simulated for those customers
(``_simulate.py``); each day's per-customer features computed from it (``_daily.py``);
the feature definitions and point-in-time training sets (``_features.py``); the
cost-tuned threshold (``_threshold.py``); the weekly training (``_train.py``); and the
daily scores with their lineage (``_scores.py``). It is not yet in
``blueprints.BLUEPRINTS``: ``modelyard init --blueprint churn`` comes with its template,
jobs and quickstart.
"""

from modelyard.blueprints.churn._customers import CANONICAL, CustomerColumns, load_customers
from modelyard.blueprints.churn._simulate import churn_days, simulate, simulate_day

__all__ = [
    "CANONICAL",
    "CustomerColumns",
    "churn_days",
    "load_customers",
    "simulate",
    "simulate_day",
]
