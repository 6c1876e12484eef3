"""The churn pipeline's daily tables: the day's events, and each customer's features as
of the end of that day, one Parquet file per day (rewritten whole: a rerun of a day
replaces its outputs, never adds to them).

Features are windowed aggregates of the event log up to the end of the day (usage
sessions and minutes over the day itself and over 7, 30 and 90 days, spend over 30 and
90 days, support contacts over 30 days, plan changes over 90 days, whole days since the
last session) plus the customer's contract, charges and tenure as the customer table has
them (tenure does not age with the simulated calendar: a feature that grows with the date
would drift by construction and every drift check would flag it). Each row's
``event_timestamp`` is the end of the day it describes, so a point-in-time join at a
cut-off reads only days that ended before it. DuckDB computes the windows over the day
files, one query a day, reading the last 90 days only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from modelyard._files import atomic_path

WINDOWS = (1, 7, 30, 90)
LONGEST = max(WINDOWS)
WINDOWED = (  # sums over a window of the event log; 0 where there was no event
    "sessions_1d",
    "minutes_1d",
    "sessions_7d",
    "sessions_30d",
    "sessions_90d",
    "minutes_7d",
    "minutes_30d",
    "spend_30d",
    "spend_90d",
    "support_30d",
    "plan_changes_90d",
)
FEATURES = (*WINDOWED, "days_since_session", "tenure_months", "monthly_charges", "contract_months")


def day_name(start: datetime, day: int) -> str:
    return (start.astimezone(UTC) + timedelta(days=day)).strftime("%Y-%m-%d")


def write_day(folder: Path, start: datetime, day: int, table: pd.DataFrame) -> Path:
    """Write a day's events or features as ``folder/DAY.parquet`` (whole, atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day_name(start, day)}.parquet"
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return path


def daily_features(
    events: Path, customers: pd.DataFrame, start: datetime, day: int
) -> pd.DataFrame:
    """Every customer's ``FEATURES`` as of the end of ``day``, from the event files in
    ``events`` (those of the ``LONGEST`` days up to ``day``; a missing day is no events)."""
    import duckdb

    end = start.astimezone(UTC) + timedelta(days=day + 1)
    files = [
        str(events / f"{day_name(start, d)}.parquet")
        for d in range(day - LONGEST + 1, day + 1)
        if (events / f"{day_name(start, d)}.parquet").is_file()
    ]
    people = customers[["customer_id", "tenure_months", "monthly_charges", "contract_months"]]
    con = duckdb.connect()
    try:
        con.register("people", people)
        windows = _aggregates(files, end)
        frame = con.execute(
            f"""
            SELECT p.customer_id,
                   {", ".join(f"coalesce(w.{c}, 0)::DOUBLE AS {c}" for c in WINDOWED)},
                   coalesce(w.days_since_session, {day + 1 + LONGEST})::DOUBLE
                       AS days_since_session,
                   p.tenure_months::DOUBLE AS tenure_months,
                   p.monthly_charges::DOUBLE AS monthly_charges,
                   p.contract_months::DOUBLE AS contract_months
            FROM people p LEFT JOIN ({windows}) w USING (customer_id)
            ORDER BY p.customer_id
            """
        ).df()
    finally:
        con.close()
    frame.insert(1, "event_timestamp", pd.Timestamp(end))
    return frame


def _aggregates(files: list[str], end: datetime) -> str:
    if not files:
        nothing = ", ".join(f"NULL::DOUBLE AS {c}" for c in (*WINDOWED, "days_since_session"))
        return f"SELECT NULL::VARCHAR AS customer_id, {nothing} WHERE false"
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    stamp = f"TIMESTAMPTZ '{end.isoformat()}'"

    def since(days: int) -> str:
        return f"ts >= {stamp} - INTERVAL {days} DAY"

    # Sums of money and minutes are rounded: DuckDB adds floats in parallel, in no fixed
    # order, and the last bits of a sum would otherwise differ from one run to the next.
    return f"""
        SELECT customer_id,
            sum(count) FILTER (WHERE kind = 'usage' AND {since(1)}) AS sessions_1d,
            round(sum(amount) FILTER (WHERE kind = 'usage' AND {since(1)}), 6) AS minutes_1d,
            sum(count) FILTER (WHERE kind = 'usage' AND {since(7)}) AS sessions_7d,
            sum(count) FILTER (WHERE kind = 'usage' AND {since(30)}) AS sessions_30d,
            sum(count) FILTER (WHERE kind = 'usage') AS sessions_90d,
            round(sum(amount) FILTER (WHERE kind = 'usage' AND {since(7)}), 6) AS minutes_7d,
            round(sum(amount) FILTER (WHERE kind = 'usage' AND {since(30)}), 6) AS minutes_30d,
            round(sum(amount) FILTER (WHERE kind = 'bill' AND {since(30)}), 6) AS spend_30d,
            round(sum(amount) FILTER (WHERE kind = 'bill'), 6) AS spend_90d,
            sum(count) FILTER (WHERE kind = 'support' AND {since(30)}) AS support_30d,
            sum(count) FILTER (WHERE kind = 'plan_change') AS plan_changes_90d,
            date_diff('second', max(ts) FILTER (WHERE kind = 'usage'), {stamp}) // 86400
                AS days_since_session
        FROM read_parquet([{listed}])
        WHERE ts < {stamp} AND ts >= {stamp} - INTERVAL {LONGEST} DAY
        GROUP BY customer_id
    """
