"""The churn blueprint's event log: daily usage, bills, support contacts and plan changes
for real customers, simulated with a seed, one day at a time.

The real customer table has attributes and a churn label but no history; the daily
pipeline needs timestamped events. Assumptions, each kept simple and stated:

- Day 0 is ``start`` (UTC midnight). The days before it are history: the pipeline lays
  out 90 of them, so that the longest feature window is full from day 0 on.
- A customer whose real label says churned leaves on a day drawn once from
  [``FIRST_LEAVING_DAY``, ``LAST_LEAVING_DAY``] (seeded by the customer id): a ``leave``
  event that day, and no event from then on. Departures thus go on at a steady rate
  from the first day of history, so every day looks alike (no drift) until
  ``drift_day``; after ``LAST_LEAVING_DAY`` nobody leaves, and training finds no
  churner to learn from.
  A customer who stayed never leaves.
- Usage: sessions a day ~ Poisson(0.5 + monthly_charges / 25), minutes per session ~
  Exponential(mean 12). In the ``DECLINE_DAYS`` before leaving, the rate falls linearly
  to 30% (a churner disengages first).
- Bills: every 30 days on the customer's own billing day (0-29, from the id), of
  ``monthly_charges`` with 2% noise.
- Support contacts ~ Poisson(1/60 a day), x1.5 on a month-to-month contract, x4 in the
  ``DECLINE_DAYS`` before leaving. Plan changes ~ Poisson(1/365 a day), x5 then.
- ``drift_day``: from that day on, usage falls to 60% and bills rise by 15% for everyone
  (a price rise that people answer by using less): the drift the monitors must catch.

Each day is drawn from its own generator (``seed``, day), so simulating day 12 alone
gives the rows that a run over days 0-30 gives for day 12: a day's data can be made
again, and ``--simulate-days N`` advances without redoing the past.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd

FIRST_LEAVING_DAY = -89
LAST_LEAVING_DAY = 240
DECLINE_DAYS = 30
EVENT_COLUMNS = ("customer_id", "ts", "kind", "count", "amount")
KINDS = ("usage", "bill", "support", "plan_change", "leave")


def churn_days(customers: pd.DataFrame, seed: int) -> np.ndarray:
    """The day each customer leaves (a float NaN for those who stay), by their id."""
    draws = _per_customer(customers["customer_id"], seed, "churn-day")
    days = FIRST_LEAVING_DAY + np.floor(draws * (LAST_LEAVING_DAY - FIRST_LEAVING_DAY + 1))
    return np.where(customers["churned"].to_numpy(bool), days, np.nan)


def simulate_day(
    customers: pd.DataFrame,
    day: int,
    *,
    start: datetime,
    seed: int,
    drift_day: int | None = None,
    leaving: np.ndarray | None = None,
) -> pd.DataFrame:
    """The events of ``day`` (0 is ``start``): one row per customer, kind and day with a
    count and an amount (usage: minutes; bill: charged; support, plan_change: 1 each).

    ``leaving``: ``churn_days(customers, seed)``, passed when simulating many days."""
    if leaving is None:
        leaving = churn_days(customers, seed)
    # A seed sequence takes no negative entropy: days before start draw from a stream of
    # their own.
    rng = np.random.default_rng([seed, day] if day >= 0 else [seed, 1 << 32, -day])
    n = len(customers)
    charges = customers["monthly_charges"].to_numpy(np.float64)
    active = ~(leaving <= day)
    to_go = leaving - day  # days left before leaving (NaN: staying)
    decline = np.where(to_go <= DECLINE_DAYS, 0.3 + 0.7 * np.clip(to_go, 0, None) / DECLINE_DAYS, 1)
    decline = np.nan_to_num(decline, nan=1.0)
    near = np.nan_to_num(to_go <= DECLINE_DAYS, nan=0.0).astype(bool)
    drifted = drift_day is not None and day >= drift_day
    usage_rate = (0.5 + charges / 25.0) * decline * (0.6 if drifted else 1.0)
    sessions = rng.poisson(usage_rate)
    minutes = rng.gamma(np.maximum(sessions, 1), 12.0) * (sessions > 0)
    billing_day = np.floor(_per_customer(customers["customer_id"], seed, "bill-day") * 30)
    billed = (day % 30) == billing_day
    bill = charges * (1.0 + rng.normal(0, 0.02, n)) * (1.15 if drifted else 1.0)
    monthly = customers["contract_months"].to_numpy() == 1
    support = rng.poisson((1 / 60) * np.where(monthly, 1.5, 1.0) * np.where(near, 4.0, 1.0))
    changes = rng.poisson((1 / 365) * np.where(near, 5.0, 1.0))
    seconds = rng.integers(0, 86_400, n)
    when = pd.Timestamp(start.astimezone(UTC)) + pd.to_timedelta(day, "D")
    stamps = when + pd.to_timedelta(seconds, "s")
    parts = [
        _rows(customers, stamps, "usage", sessions, minutes, active & (sessions > 0)),
        _rows(customers, stamps, "bill", np.ones(n, np.int64), bill, active & billed),
        _rows(customers, stamps, "support", support, support.astype(float), active & (support > 0)),
        _rows(
            customers, stamps, "plan_change", changes, changes.astype(float), active & (changes > 0)
        ),
        _rows(customers, stamps, "leave", np.ones(n, np.int64), np.zeros(n), leaving == day),
    ]
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["ts", "customer_id", "kind"], ignore_index=True)


def simulate(
    customers: pd.DataFrame,
    days: int,
    *,
    start: datetime,
    seed: int,
    drift_day: int | None = None,
    first_day: int = 0,
) -> pd.DataFrame:
    """The events of days ``first_day`` to ``first_day + days - 1``, oldest first."""
    leaving = churn_days(customers, seed)
    frames = [
        simulate_day(customers, d, start=start, seed=seed, drift_day=drift_day, leaving=leaving)
        for d in range(first_day, first_day + days)
    ]
    if not frames:
        return pd.DataFrame({c: [] for c in EVENT_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _rows(
    customers: pd.DataFrame,
    stamps: pd.DatetimeIndex,
    kind: str,
    count: np.ndarray,
    amount: np.ndarray,
    keep: np.ndarray,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[keep],
            "ts": stamps[keep],
            "kind": kind,
            "count": count[keep].astype(np.int64),
            "amount": np.round(amount[keep].astype(np.float64), 2),
        }
    )


def _per_customer(ids: pd.Series, seed: int, purpose: str) -> np.ndarray:
    """A uniform [0, 1) draw per customer that depends on its id, not its row: the same
    customer gets the same churn day and billing day in any table that holds it."""
    out = np.empty(len(ids))
    for i, cid in enumerate(ids.astype(str)):
        digest = hashlib.blake2b(f"{seed}:{purpose}:{cid}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out
