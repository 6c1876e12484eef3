"""Send one alert to named sinks and record it in the alert history.

Alert rules, failed jobs and rolled-back canaries all notify through this one path, so
``modelyard monitor alerts`` shows every notification whatever raised it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert

from modelyard import _time
from modelyard.backends.metadata import MetadataStore
from modelyard.backends.metadata import tables as t
from modelyard.monitoring._rules import Alerting
from modelyard.monitoring._sinks import Alert


def deliver(
    store: MetadataStore, alerting: Alerting, alert: Alert, sinks: Iterable[str]
) -> dict[str, str]:
    """Send ``alert`` to each sink in ``sinks``; returns ``{sink: "sent" | "failed: …"}``.

    A sink's failure is recorded beside the others' deliveries, never raised: one broken
    webhook must not silence the rest.
    """
    deliveries: dict[str, str] = {}
    for name in sinks:
        try:
            alerting.sinks[name].send(alert)
            deliveries[name] = "sent"
        except Exception as exc:
            deliveries[name] = f"failed: {exc}"
    with store.write() as conn:
        conn.execute(
            insert(t.alert_events),
            [
                {
                    "rule": alert.rule,
                    "state": alert.state,
                    "severity": alert.severity,
                    "subject": alert.subject,
                    "metric": alert.metric,
                    "value": alert.value,
                    "message": alert.message,
                    "deliveries": deliveries,
                    "at": _time.to_us(alert.at),
                }
            ],
        )
    return deliveries
