"""Drift between a reference profile and a current window, column by column.

The current window is binned with the reference's edges and categories, then:

- numeric columns: PSI over the ``bins`` equal-mass bins, and the two-sample
  Kolmogorov–Smirnov statistic with its p-value;
- categorical columns: PSI, the Jensen–Shannon distance (base 2, so in [0, 1]) and
  the chi-squared test of homogeneity on the 2 x K table of counts, with Cramér's V.

PSI gives empty bins a proportion of ``EPSILON`` = 1e-4 (the usual convention), so a
bin that empties out adds a large but finite term instead of infinity.

KS without raw rows. The profile keeps no sample (rows may be PII and the profile
travels with the model version; a sample would also make the result depend on a seed
and throw away most of the current window). Instead it keeps reference counts on a
grid of every percentile, and ``D`` is the largest gap between the reference and the
current empirical CDFs over those grid points, using every current row. That is exact
at ~100 points and can fall short of the full-sample ``D`` by at most the reference
mass of one grid cell (about 0.01), so it errs towards not flagging. The p-value is the
one scipy's ``ks_2samp(method="asymp")`` uses: ``kstwo.sf(D, round(n*m/(n+m)))``.

Significance alone is not drift: with a million rows every trivial difference has a
p-value near zero. So a test flags a column only when its p-value is below
``p_value`` *and* its effect size is meaningful (KS ``D >= ks``, Cramér's
``V >= cramers_v``); PSI and JS flag on their own thresholds. Small windows are
protected by the p-value, large ones by the effect size.

Two checks look past the distribution of the values that are there:

- ``null_rate_change``: the null rate moved by at least this much (absolute, either way) from
  the reference's; a column whose nulls jump from 0% to 50% is broken upstream even
  when the values that remain look the same;
- ``unseen_share`` (categorical): at least this share of the current non-null values are
  categories the reference never saw. Not measured when the reference folded its rare
  categories into ``__other__``, since an unknown value may be one of those.

Below ``min_rows`` current rows (``monitoring.min_rows``) nothing is judged: the report's
``status`` is ``"not_enough_data"`` and it lists no column (see ``_sample.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats
from scipy.spatial import distance

from modelyard.contracts import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileKind,
    profile,
)
from modelyard.errors import InvalidInputError
from modelyard.monitoring._sample import DEFAULT_MIN_ROWS, NOT_ENOUGH_DATA, SampleSize

EPSILON = 1e-4
# The bucket a reference profile folds its rare categories into (contracts' OTHER).
FOLDED = "__other__"

DEFAULT_THRESHOLDS: dict[ProfileKind, dict[str, float]] = {
    "numeric": {"psi": 0.2, "ks": 0.05, "p_value": 0.01, "null_rate_change": 0.1},
    "categorical": {
        "js": 0.1,
        "cramers_v": 0.1,
        "p_value": 0.01,
        "null_rate_change": 0.1,
        "unseen_share": 0.1,
    },
}


class ColumnDrift(BaseModel):
    """The drift verdict for one column, with what it was based on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str
    kind: ProfileKind
    drifted: bool
    reason: str
    metrics: dict[str, float | None]
    thresholds: dict[str, float]
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    null_rate_reference: float
    null_rate_current: float
    new_categories: tuple[str, ...] = ()


class DriftReport(BaseModel):
    """Per-column drift of a current window against a reference profile."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows_reference: int
    rows_current: int
    columns: dict[str, ColumnDrift]
    # "not_enough_data": fewer current rows than ``min_rows``, so no column was judged.
    status: Literal["ok", "not_enough_data"] = "ok"
    min_rows: int = DEFAULT_MIN_ROWS
    note: str = ""

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.drifted]

    def to_json_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "drifted_columns": self.drifted_columns}


def drift(
    reference: Profile | Any,
    current: Profile | Any,
    *,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> DriftReport:
    """Compare ``current`` with ``reference`` (profiles, DataFrames or pyarrow Tables).

    Args:
        thresholds: per-column overrides of the defaults in ``DEFAULT_THRESHOLDS``,
            e.g. ``{"age": {"psi": 0.1, "null_rate_change": 0.05}}``.
        min_rows: fewer current rows than this are "not enough data": nothing is judged.
    """
    ref = reference if isinstance(reference, Profile) else profile(reference)
    if isinstance(current, Profile):
        cur = current
        _check_binned_alike(ref, cur)
    else:
        cur = profile(current, reference=ref)
    if cur.rows == 0:
        raise InvalidInputError("no rows in the current window; wait for traffic or widen it")
    limits = _thresholds(ref, thresholds or {})
    short = SampleSize(min_rows=min_rows).short_of_rows(cur.rows)
    if short:
        return DriftReport(
            rows_reference=ref.rows,
            rows_current=cur.rows,
            columns={},
            status=NOT_ENOUGH_DATA,
            min_rows=min_rows,
            note=short,
        )
    columns: dict[str, ColumnDrift] = {}
    for name, rcol in ref.columns.items():
        ccol = cur.columns[name]
        if isinstance(rcol, NumericProfile):
            assert isinstance(ccol, NumericProfile)
            columns[name] = _numeric(name, rcol, ccol, limits[name])
        else:
            assert isinstance(ccol, CategoricalProfile)
            columns[name] = _categorical(name, rcol, ccol, limits[name])
    return DriftReport(
        rows_reference=ref.rows, rows_current=cur.rows, columns=columns, min_rows=min_rows
    )


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two proportion vectors, empty bins at ``EPSILON``."""
    e = np.maximum(expected, EPSILON)
    a = np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _check_binned_alike(ref: Profile, cur: Profile) -> None:
    for name, rcol in ref.columns.items():
        ccol = cur.columns.get(name)
        if ccol is None:
            raise InvalidInputError(
                f"column '{name}' of the reference profile is missing from the current"
                " profile; profile the current window with all of the reference's columns"
            )
        same = ccol.kind == rcol.kind and (
            isinstance(rcol, CategoricalProfile)
            or (
                isinstance(ccol, NumericProfile)
                and (ccol.grid, ccol.edges) == (rcol.grid, rcol.edges)
            )
        )
        if not cur.binned_with_reference or not same:
            raise InvalidInputError(
                f"column '{name}' of the current profile was not binned with the reference's"
                " edges; build it with profile(data, reference=reference_profile)"
            )


def _thresholds(
    ref: Profile, overrides: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    limits = {name: dict(DEFAULT_THRESHOLDS[col.kind]) for name, col in ref.columns.items()}
    for name, given in overrides.items():
        if name not in limits:
            raise InvalidInputError(
                f"thresholds name column '{name}', which the reference does not profile;"
                f" use one of: {', '.join(limits)}"
            )
        for key, value in given.items():
            if key not in limits[name]:
                kind = ref.columns[name].kind
                raise InvalidInputError(
                    f"threshold '{key}' does not apply to {kind} column '{name}';"
                    f" use one of: {', '.join(limits[name])}"
                )
            limits[name][key] = float(value)
    return limits


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def _null_rate(rcol: Any, ccol: Any, limits: dict[str, float]) -> tuple[float, str]:
    """(absolute change of the null rate, the reason it flags or "")."""
    change = abs(ccol.null_rate - rcol.null_rate)
    if change < limits["null_rate_change"]:
        return change, ""
    return change, (
        f"null rate {rcol.null_rate:.1%} -> {ccol.null_rate:.1%}"
        f" (change {change:.3g} >= {limits['null_rate_change']:g})"
    )


def _empty_verdict(
    name: str,
    kind: ProfileKind,
    limits: dict[str, float],
    rcol: Any,
    ccol: Any,
    labels: tuple[str, ...],
) -> ColumnDrift | None:
    """A verdict when one side has no non-null values; None when both have some."""
    r_present, c_present = rcol.rows - rcol.nulls, ccol.rows - ccol.nulls
    if r_present and c_present:
        return None
    change, null_reason = _null_rate(rcol, ccol, limits)
    if r_present:
        reason = "every value is null in the current window"
    else:
        reason = null_reason or "no non-null values in the reference: nothing to compare"
    return ColumnDrift(
        column=name,
        kind=kind,
        drifted=bool(r_present or null_reason),
        reason=reason,
        metrics={"null_rate_change": change},
        thresholds=limits,
        bins=labels,
        reference=tuple(_proportions(np.asarray(rcol.counts, dtype=float)).tolist()),
        current=tuple(_proportions(np.asarray(ccol.counts, dtype=float)).tolist()),
        null_rate_reference=rcol.null_rate,
        null_rate_current=ccol.null_rate,
    )


def _numeric(
    name: str, rcol: NumericProfile, ccol: NumericProfile, limits: dict[str, float]
) -> ColumnDrift:
    edges = rcol.bin_edges
    labels = tuple(f"[{lo:.6g}, {hi:.6g})" for lo, hi in zip(edges[:-1], edges[1:], strict=True))
    empty = _empty_verdict(name, "numeric", limits, rcol, ccol, labels)
    if empty is not None:
        return empty
    pr = _proportions(np.asarray(rcol.counts, dtype=float))
    pc = _proportions(np.asarray(ccol.counts, dtype=float))
    value = psi(pr, pc)
    gr, gc = np.asarray(rcol.grid_counts, dtype=float), np.asarray(ccol.grid_counts, dtype=float)
    n, m = gr.sum(), gc.sum()
    d = float(np.max(np.abs(np.cumsum(gr)[:-1] / n - np.cumsum(gc)[:-1] / m), initial=0.0))
    p = float(stats.kstwo.sf(d, round(n * m / (n + m))))
    reasons = []
    if value >= limits["psi"]:
        reasons.append(f"psi {value:.3g} >= {limits['psi']:g}")
    if p < limits["p_value"] and d >= limits["ks"]:
        reasons.append(f"ks {d:.3g} >= {limits['ks']:g} with p {p:.3g} < {limits['p_value']:g}")
    change, null_reason = _null_rate(rcol, ccol, limits)
    if null_reason:
        reasons.append(null_reason)
    return ColumnDrift(
        column=name,
        kind="numeric",
        drifted=bool(reasons),
        reason="; ".join(reasons),
        metrics={"psi": value, "ks": d, "ks_p_value": p, "null_rate_change": change},
        thresholds=limits,
        bins=labels,
        reference=tuple(pr.tolist()),
        current=tuple(pc.tolist()),
        null_rate_reference=rcol.null_rate,
        null_rate_current=ccol.null_rate,
    )


def _categorical(
    name: str, rcol: CategoricalProfile, ccol: CategoricalProfile, limits: dict[str, float]
) -> ColumnDrift:
    # The current profile lists the reference's categories first, then the new ones.
    labels = ccol.categories
    r = np.zeros(len(labels))
    r[: len(rcol.counts)] = rcol.counts
    c = np.asarray(ccol.counts, dtype=float)
    empty = _empty_verdict(name, "categorical", limits, rcol, ccol, labels)
    if empty is not None:
        return empty
    pr, pc = _proportions(r), _proportions(c)
    seen = (r + c) > 0
    js = float(distance.jensenshannon(pr[seen], pc[seen], base=2))
    if seen.sum() >= 2:
        chi2, p, _, _ = stats.chi2_contingency(np.vstack([r[seen], c[seen]]), correction=False)
        chi2, p = float(chi2), float(p)
    else:
        chi2, p = 0.0, 1.0
    v = math.sqrt(chi2 / (r.sum() + c.sum()))
    reasons = []
    if js >= limits["js"]:
        reasons.append(f"js {js:.3g} >= {limits['js']:g}")
    if p < limits["p_value"] and v >= limits["cramers_v"]:
        reasons.append(
            f"cramers_v {v:.3g} >= {limits['cramers_v']:g} with p {p:.3g} < {limits['p_value']:g}"
        )
    change, null_reason = _null_rate(rcol, ccol, limits)
    if null_reason:
        reasons.append(null_reason)
    # Values the reference folded into __other__ may be any rare category: not measurable.
    unseen = None if FOLDED in rcol.categories else float(c[len(rcol.counts) :].sum() / c.sum())
    if unseen is not None and unseen >= limits["unseen_share"]:
        reasons.append(f"unseen categories {unseen:.1%} >= {limits['unseen_share']:.1%}")
    if reasons and ccol.new_categories:
        reasons.append(f"new categories: {', '.join(ccol.new_categories[:5])}")
    return ColumnDrift(
        column=name,
        kind="categorical",
        drifted=bool(reasons),
        reason="; ".join(reasons),
        metrics={
            "psi": psi(pr, pc),
            "js": js,
            "chi2": chi2,
            "chi2_p_value": p,
            "cramers_v": v,
            "null_rate_change": change,
            "unseen_share": unseen,
        },
        thresholds=limits,
        bins=labels,
        reference=tuple(pr.tolist()),
        current=tuple(pc.tolist()),
        null_rate_reference=rcol.null_rate,
        null_rate_current=ccol.null_rate,
        new_categories=ccol.new_categories,
    )
