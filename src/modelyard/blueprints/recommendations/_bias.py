"""Bias checks on a night's top-N lists, before they are published.

- popularity: the most popular 10% of items (by interactions) take a share of the
  recommended slots; that share over their share of the interactions is the *lift*
  (1: lists as concentrated as the behaviour they learnt from; the popularity baseline
  is far above it). At most ``max_popularity_lift``.
- coverage: the distinct items recommended to anyone, over the catalogue (items with an
  interaction). At least ``min_coverage``.
- group exposure: per genre, its share of the recommended slots over its share of the
  catalogue (an item of k genres counts 1/k to each), for every genre that holds at
  least ``min_group_share`` of the catalogue. Within [min, max]_exposure_ratio.

Each check is measured on the lists' first ``depth`` items (what the read API returns
by default). The report is what the night stores (``bias.json`` of its run) and what
the dashboard draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from modelyard.blueprints.recommendations._config import BiasSettings
    from modelyard.blueprints.recommendations._topn import TopN

Verdict = Literal["published", "warned", "blocked"]
TOP_SHARE = 0.10  # "the most popular 10% of items"


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    op: Literal["<=", ">=", "within"]
    threshold: float | tuple[float, float]
    passed: bool
    detail: str


@dataclass(frozen=True)
class BiasReport:
    checks: list[Check]
    popularity: dict[str, float]
    coverage: dict[str, float]
    groups: list[dict[str, Any]]
    on_breach: Literal["block", "warn"]
    depth: int

    @property
    def breaches(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def verdict(self) -> Verdict:
        if not self.breaches:
            return "published"
        return "blocked" if self.on_breach == "block" else "warned"

    def metrics(self) -> dict[str, float]:
        return {f"bias.{c.name}": c.value for c in self.checks}

    def summary(self) -> str:
        """One line: each breached check, or that all passed."""
        if not self.breaches:
            return "bias checks passed: " + ", ".join(
                f"{c.name} {c.value:.3g}" for c in self.checks
            )
        return "; ".join(c.detail for c in self.breaches)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "on_breach": self.on_breach,
            "depth": self.depth,
            "checks": [
                {
                    "name": c.name,
                    "value": c.value,
                    "op": c.op,
                    "threshold": list(c.threshold)
                    if isinstance(c.threshold, tuple)
                    else c.threshold,
                    "passed": c.passed,
                    "detail": c.detail,
                }
                for c in self.checks
            ],
            "popularity": self.popularity,
            "coverage": self.coverage,
            "groups": self.groups,
        }


def check_bias(
    lists: TopN,
    item_counts: np.ndarray[Any, Any],
    genres: list[list[str]],
    settings: BiasSettings,
    *,
    depth: int = 10,
) -> BiasReport:
    """The three checks of ``lists`` (item column indices) against ``settings``."""
    shown = lists.items[:, :depth]
    shown = shown[shown >= 0]
    slots = max(shown.size, 1)
    n_items = len(item_counts)

    top_count = max(1, int(np.ceil(TOP_SHARE * n_items)))
    top = np.argsort(-item_counts, kind="stable")[:top_count]
    is_top = np.zeros(n_items, dtype=bool)
    is_top[top] = True
    recommended_share = float(is_top[shown].sum() / slots)
    interaction_share = float(item_counts[top].sum() / max(item_counts.sum(), 1))
    lift = recommended_share / interaction_share if interaction_share else 0.0
    most = settings.max_popularity_lift
    lift_ok = lift <= most
    popularity = Check(
        "popularity_lift",
        lift,
        "<=",
        most,
        lift_ok,
        f"popularity lift {lift:.4g} {'<=' if lift_ok else '>'} {most:g}: the top 10% of items "
        f"take {recommended_share:.0%} of the slots for {interaction_share:.0%} of interactions",
    )

    distinct = int(np.unique(shown).size)
    share = distinct / max(n_items, 1)
    coverage = Check(
        "coverage",
        share,
        ">=",
        settings.min_coverage,
        share >= settings.min_coverage,
        f"coverage {share:.2%} {'>=' if share >= settings.min_coverage else '<'} "
        f"{settings.min_coverage:.2%}: {distinct} of {n_items} items are recommended to anyone",
    )

    groups, exposure = _exposure(shown, genres, settings)
    return BiasReport(
        checks=[popularity, coverage, exposure],
        popularity={
            "top_items": float(top_count),
            "recommended_share": recommended_share,
            "interaction_share": interaction_share,
            "lift": lift,
        },
        coverage={
            "recommended_items": float(distinct),
            "catalogue": float(n_items),
            "share": share,
        },
        groups=groups,
        on_breach=settings.on_breach,
        depth=depth,
    )


def _exposure(
    shown: np.ndarray[Any, Any], genres: list[list[str]], settings: BiasSettings
) -> tuple[list[dict[str, Any]], Check]:
    names = sorted({g for item in genres for g in item})
    index = {g: j for j, g in enumerate(names)}
    weights = np.zeros((len(genres), len(names)), dtype=np.float64)
    for i, item in enumerate(genres):
        for g in item:
            weights[i, index[g]] += 1.0 / len(item)
    catalogue = weights.sum(axis=0) / max(len(genres), 1)
    exposure = weights[shown].sum(axis=0) / max(shown.size, 1)
    low, high = settings.min_exposure_ratio, settings.max_exposure_ratio
    rows: list[dict[str, Any]] = []
    worst: dict[str, Any] | None = None
    worst_gap = -np.inf  # the group nearest a bound, even when every group is inside
    for j, name in enumerate(names):
        checked = bool(catalogue[j] >= settings.min_group_share)
        ratio = float(exposure[j] / catalogue[j]) if catalogue[j] else 0.0
        ok = (not checked) or (low <= ratio <= high)
        rows.append(
            {
                "group": name,
                "exposure_share": float(exposure[j]),
                "catalogue_share": float(catalogue[j]),
                "ratio": ratio,
                "checked": checked,
                "passed": ok,
            }
        )
        if checked:
            # How far outside the band, on a log scale: 0.5 and 2 are as far from 1.
            gap = max(
                np.log(low / ratio) if ratio else np.inf, np.log(ratio / high) if ratio else 0.0
            )
            if gap > worst_gap:
                worst, worst_gap = rows[-1], gap
    rows.sort(key=lambda r: -float(r["catalogue_share"]))
    checked_rows = [r for r in rows if r["checked"]]
    failing = [r for r in checked_rows if not r["passed"]]
    value = 1.0 if worst is None else float(worst["ratio"])  # the group furthest out
    detail = (
        "group exposure outside ["
        + f"{low:g}, {high:g}]: "
        + ", ".join(f"{r['group']} {r['ratio']:.3g}" for r in failing)
        if failing
        else f"group exposure within [{low:g}, {high:g}]"
    )
    if worst is not None and not failing:
        detail += f" (furthest: {worst['group']} {worst['ratio']:.3g})"
    return rows, Check("group_exposure", value, "within", (low, high), not failing, detail)
