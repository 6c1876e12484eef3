"""Reference profiles and drift: the issue's precision/recall target and the edge cases."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.contracts import Field, Schema
from modelyard.errors import InvalidInputError
from modelyard.monitoring import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    drift,
    drift_values,
    profile,
)

LABELS = np.array([f"c{k}" for k in range(8)], dtype=object)
MIX = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
MANY = np.array([f"id{k}" for k in range(200)], dtype=object)

# Drift injected into these; every other column is drawn afresh from the same law.
MEAN_SHIFT = {"n0", "n1"}
VARIANCE = {"n2", "n3"}
NEW_CATEGORY = {"c1"}
NEW_MIX = {"c2"}
DRIFTED = MEAN_SHIFT | VARIANCE | NEW_CATEGORY | NEW_MIX


def make(n: int, rng: np.random.Generator, *, drifted: bool) -> pd.DataFrame:
    """20 numeric columns of five families and 5 categorical ones (one with 200 levels)."""
    cols: dict[str, object] = {}
    for i in range(20):
        name = f"n{i}"
        shift = 0.5 if drifted and name in MEAN_SHIFT else 0.0  # in standard deviations
        scale = 2.0 if drifted and name in VARIANCE else 1.0
        family = i % 5
        if family == 0:
            cols[name] = rng.normal(10 + shift, scale, n)
        elif family == 1:
            cols[name] = np.exp(rng.normal(shift * 0.5, 0.5 * scale, n))
        elif family == 2:
            cols[name] = (rng.uniform(0, 1, n) - 0.5) * scale + shift * 0.29
        elif family == 3:
            cols[name] = rng.poisson(4 * scale**2, n) + round(shift * 2)
        else:
            cols[name] = rng.exponential(1, n) * scale + shift
    cols["c0"] = LABELS[rng.choice(8, n, p=MIX)]
    c1 = LABELS[rng.choice(8, n, p=MIX)]
    if drifted:
        c1[rng.random(n) < 0.05] = "brand-new"
    cols["c1"] = c1
    cols["c2"] = LABELS[rng.choice(8, n, p=MIX[::-1] if drifted else MIX)]
    cols["c3"] = rng.random(n) < 0.3
    cols["c4"] = MANY[rng.zipf(1.5, n) % 200]
    return pd.DataFrame(cols)


def precision_recall(n: int, seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    reference, current = make(n, rng, drifted=False), make(n, rng, drifted=True)
    started = time.perf_counter()
    report = drift(profile(reference), current)
    seconds = time.perf_counter() - started
    flagged = set(report.drifted_columns)
    hits = len(flagged & DRIFTED)
    return hits / len(flagged), hits / len(DRIFTED), seconds


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_default_thresholds_find_injected_drift_at_10k_rows(seed: int) -> None:
    precision, recall, _ = precision_recall(10_000, seed)

    assert recall == 1.0
    assert precision >= 0.9


@pytest.mark.slow
def test_default_thresholds_find_injected_drift_at_1m_rows() -> None:
    precision, recall, seconds = precision_recall(1_000_000, 7)

    assert recall == 1.0
    assert precision >= 0.9
    assert seconds < 10  # about 0.6 s for profile + drift on a laptop


def test_trivial_difference_in_a_huge_sample_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 500_000)})
    current = pd.DataFrame({"x": rng.normal(0.03, 1, 500_000)})

    col = drift(reference, current).columns["x"]

    assert col.metrics["ks_p_value"] is not None and col.metrics["ks_p_value"] < 0.01
    assert not col.drifted


def test_identical_data_drifts_nowhere() -> None:
    data = make(5_000, np.random.default_rng(0), drifted=False)

    report = drift(data, data)

    assert report.drifted_columns == []
    assert all(c.metrics.get("psi") == 0.0 for c in report.columns.values())


def test_profile_round_trips_through_json() -> None:
    data = make(2_000, np.random.default_rng(0), drifted=False)
    data.loc[::7, "n0"] = np.nan
    ref = profile(data)

    again = Profile.from_json(json.dumps(ref.to_json_dict(), allow_nan=False))

    assert again == ref
    assert Profile.from_json(ref.to_json_dict()) == ref
    assert drift(again, data).drifted_columns == []


def test_profile_reads_a_pyarrow_table_and_obeys_a_schema() -> None:
    table = pa.table({"code": [1, 2, 2, 3], "amount": [1.0, 2.0, 3.0, 4.0], "x": ["a"] * 4})
    schema = Schema.of(
        Field(name="code", dtype="int64", categories=(1, 2, 3)),
        Field(name="amount", dtype="float64"),
    )

    prof = profile(table, schema)

    assert list(prof.columns) == ["code", "amount"]
    code = prof.columns["code"]
    assert isinstance(code, CategoricalProfile)
    assert dict(zip(code.categories, code.counts, strict=True)) == {"2": 2, "1": 1, "3": 1}


def test_profile_keeps_the_requested_quantiles_and_equal_mass_bins() -> None:
    x = np.arange(1_000, dtype=float)

    col = profile(pd.DataFrame({"x": x})).columns["x"]

    assert isinstance(col, NumericProfile)
    assert col.quantiles["0.5"] == pytest.approx(np.quantile(x, 0.5))
    assert col.quantiles["0.99"] == pytest.approx(np.quantile(x, 0.99))
    assert col.bin_edges[0] == -np.inf and col.bin_edges[-1] == np.inf
    assert len(col.counts) == 10
    assert max(col.counts) - min(col.counts) <= 2
    assert sum(col.counts) == 1_000


def test_top_50_categories_are_kept_and_the_rest_folded_into_other() -> None:
    values = [f"v{k}" for k in range(80) for _ in range(80 - k)]

    col = profile(pd.DataFrame({"s": values})).columns["s"]

    assert isinstance(col, CategoricalProfile)
    assert len(col.categories) == 51
    assert col.categories[-1] == "__other__"
    assert col.counts[-1] == sum(80 - k for k in range(50, 80))


def test_empty_current_window_is_a_clear_error() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "a"]})

    with pytest.raises(InvalidInputError, match="no rows in the current window"):
        drift(reference, reference.iloc[:0])


def test_missing_column_names_the_column_and_the_fix() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "a"]})

    with pytest.raises(InvalidInputError, match="column 's' of the reference profile is missing"):
        drift(reference, reference[["x"]])


def test_nulls_count_in_the_null_rate_and_do_not_crash() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {
            "x": np.where(rng.random(1_000) < 0.1, np.nan, rng.normal(size=1_000)),
            "i": pd.array([1, None, 3, 4] * 250, dtype="Int64"),
            "s": pd.Series(["a", None, "b", "b"] * 250, dtype=object),
        }
    )
    current = reference.copy()
    current["x"] = np.nan

    report = drift(reference, current)

    assert report.columns["i"].null_rate_reference == 0.25
    assert report.columns["s"].null_rate_current == 0.25
    assert 0.05 < report.columns["x"].null_rate_reference < 0.15
    assert report.columns["x"].null_rate_current == 1.0
    assert report.drifted_columns == ["x"]
    assert "null" in report.columns["x"].reason


def test_values_outside_the_reference_range_land_in_the_end_bins() -> None:
    reference = pd.DataFrame({"x": np.linspace(0, 1, 1_000)})
    current = pd.DataFrame({"x": [-50.0, -1.0, 0.5, 2.0, 1e9]})

    col = drift(reference, current, min_rows=1).columns["x"]

    assert col.current[0] == pytest.approx(2 / 5)
    assert col.current[-1] == pytest.approx(2 / 5)
    assert sum(col.current) == pytest.approx(1.0)


def test_an_unseen_category_drifts_and_is_listed() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"s": LABELS[rng.choice(8, 5_000, p=MIX)]})
    current = pd.DataFrame({"s": LABELS[rng.choice(8, 5_000, p=MIX)]})
    current.loc[:499, "s"] = "never-seen"

    col = drift(reference, current).columns["s"]

    assert col.drifted
    assert col.new_categories == ("never-seen",)
    assert col.bins[-1] == "never-seen"
    assert col.reference[-1] == 0.0
    assert col.metrics["js"] is not None and col.metrics["js"] >= 0.1
    assert "never-seen" in col.reason


def test_per_column_thresholds_override_the_defaults() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
    current = pd.DataFrame({"x": rng.normal(0.1, 1, 20_000), "y": rng.normal(0.1, 1, 20_000)})

    report = drift(reference, current, thresholds={"x": {"psi": 0.005}})

    assert report.columns["x"].thresholds["psi"] == 0.005
    assert report.drifted_columns == ["x"]


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"nope": {"psi": 0.1}}, "column 'nope'.*use one of: x, s"),
        ({"x": {"js": 0.1}}, "'js' does not apply to numeric column 'x'"),
    ],
)
def test_bad_thresholds_say_what_is_valid(
    thresholds: dict[str, dict[str, float]], message: str
) -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "a"]})

    with pytest.raises(InvalidInputError, match=message):
        drift(reference, reference, thresholds=thresholds)


def test_current_profile_binned_with_the_reference_gives_the_same_report() -> None:
    rng = np.random.default_rng(0)
    reference, current = make(3_000, rng, drifted=False), make(3_000, rng, drifted=True)
    ref = profile(reference)

    from_profile = drift(ref, profile(current, reference=ref))

    assert from_profile == drift(ref, current)
    with pytest.raises(InvalidInputError, match="reference=reference_profile"):
        drift(ref, profile(current))


def test_report_json_lists_drifted_columns_and_bin_proportions() -> None:
    rng = np.random.default_rng(0)
    report = drift(make(2_000, rng, drifted=False), make(2_000, rng, drifted=True))

    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))

    assert data["drifted_columns"] == report.drifted_columns
    n0 = data["columns"]["n0"]
    assert n0["drifted"] is True
    assert len(n0["bins"]) == len(n0["reference"]) == len(n0["current"]) == 10


def test_a_jump_in_the_null_rate_drifts_even_when_the_values_look_alike() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"x": rng.normal(size=4_000), "s": LABELS[rng.choice(8, 4_000, p=MIX)]}
    )
    current = pd.DataFrame({"x": rng.normal(size=4_000), "s": LABELS[rng.choice(8, 4_000, p=MIX)]})
    current.loc[::2, "x"] = np.nan  # 0% -> 50% nulls; what is left has the same law
    current.loc[::2, "s"] = None

    report = drift(reference, current)

    assert report.drifted_columns == ["x", "s"]
    for name in ("x", "s"):
        col = report.columns[name]
        assert col.metrics["null_rate_change"] == pytest.approx(0.5)
        assert "null rate 0.0% -> 50.0%" in col.reason
    assert "psi" not in report.columns["x"].reason and "ks" not in report.columns["x"].reason
    assert drift_values(report)["drift.share"] == 1.0

    looser = drift(reference, current, thresholds={"x": {"null_rate_change": 0.6}})
    assert looser.drifted_columns == ["s"]


def test_a_share_of_unseen_categories_drifts_on_its_own_threshold() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"s": LABELS[rng.choice(8, 5_000, p=MIX)]})
    current = pd.DataFrame({"s": LABELS[rng.choice(8, 5_000, p=MIX)]})
    current.loc[:1_499, "s"] = [f"new{k % 40}" for k in range(1_500)]  # 30% unseen
    # Only the unseen-share check may flag: the distribution checks are switched off.
    off = {"js": 2.0, "cramers_v": 2.0}

    col = drift(reference, current, thresholds={"s": off}).columns["s"]

    assert col.drifted and col.metrics["unseen_share"] == pytest.approx(0.3)
    assert col.reason.startswith("unseen categories 30.0% >= 10.0%")
    looser = drift(reference, current, thresholds={"s": {**off, "unseen_share": 0.35}})
    assert not looser.columns["s"].drifted


def test_unseen_share_is_not_measured_where_the_reference_folded_its_tail() -> None:
    reference = pd.DataFrame({"s": [f"v{k}" for k in range(80) for _ in range(80 - k)]})
    current = pd.DataFrame({"s": ["never-seen"] * 500})

    col = drift(reference, current).columns["s"]

    assert col.metrics["unseen_share"] is None  # it may be one of the folded ones


def test_one_row_is_not_enough_data() -> None:
    rng = np.random.default_rng(0)
    reference = make(2_000, rng, drifted=False)

    report = drift(reference, make(1, rng, drifted=True))

    assert report.status == "not_enough_data" and report.drifted_columns == []
    assert report.note.startswith("not enough data: 1 row, fewer than monitoring.min_rows")
    assert drift_values(report) == {"drift.share": None, "drift.drifted": None, "drift.rows": 1.0}
    assert drift(reference, make(30, rng, drifted=True), min_rows=30).status == "ok"
