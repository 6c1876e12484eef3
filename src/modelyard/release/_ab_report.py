"""``modelyard release ab-report NAME``: which version of an A/B test is better, and how sure.

An A/B test (a serve spec's ``ab = {candidate, key}``) sends each client to one variant
for good; labels arrive later through ``POST /v1/feedback``. The report reads the
prediction log (every replica's) since ``since``: per variant the requests, the labelled
ones, accuracy with a Wilson score interval, and latency (p50, p99); then the accuracy
difference (candidate - champion) with Newcombe's interval built from the two Wilson
intervals (it keeps its coverage near 0 and 1, where Wald's does not), and a
recommendation: promote, keep the champion, or keep collecting (with the labels per
variant that would detect the observed difference at 80% power).

Requests are counted as independent draws; many requests from one client are not
quite that, so the interval is a little narrow for heavy clients. scipy gives the
normal quantiles; the intervals are written out here because neither scipy nor
statsmodels (not a dependency) has Newcombe's difference interval in this form.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog

Verdict = Literal["promote", "keep_champion", "keep_collecting"]
MIN_LABELS = 30
POWER = 0.8


@dataclass(frozen=True)
class VariantResult:
    variant: str
    versions: list[int]
    requests: int
    labelled: int
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class ABReport:
    model: str
    since: datetime | None
    confidence: float
    champion: VariantResult
    candidate: VariantResult | None
    difference: float | None  # candidate accuracy - champion accuracy
    difference_low: float | None
    difference_high: float | None
    verdict: Verdict
    reason: str
    others: list[str] = field(default_factory=list)  # variants seen but not compared

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = None if self.since is None else self.since.isoformat()
        return out


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(a: tuple[int, int], b: tuple[int, int], z: float) -> tuple[float, float, float]:
    """(p_b - p_a, low, high) for successes/trials ``a`` and ``b`` (Newcombe's method 10)."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    la, ua = wilson(*a, z)
    lb, ub = wilson(*b, z)
    d = pb - pa
    return (
        d,
        d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2),
        d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2),
    )


def labels_needed(pa: float, pb: float, z: float) -> int:
    """Labels per variant to detect ``pb - pa`` (at least one point) at ``POWER``."""
    from scipy.stats import norm

    d = max(abs(pb - pa), 0.01)
    spread = pa * (1 - pa) + pb * (1 - pb) or 0.01 * 0.99 * 2
    return math.ceil((z + float(norm.ppf(POWER))) ** 2 * spread / d**2)


def _variant(
    name: str, predictions: pd.DataFrame, labelled: pd.DataFrame, z: float
) -> VariantResult:
    mine = predictions[predictions["variant"] == name]
    marked = labelled[labelled["variant"] == name]
    latency = mine["latency_ms"].astype(float).to_numpy() if len(mine) else np.empty(0)
    accuracy = low = high = None
    if len(marked):
        right = int((marked["output.prediction"].astype(str) == marked["label"].astype(str)).sum())
        accuracy = right / len(marked)
        low, high = wilson(right, len(marked), z)
    return VariantResult(
        variant=name,
        versions=sorted(int(v) for v in mine["version"].unique()),
        requests=int(mine["request_id"].nunique()),
        labelled=len(marked),
        accuracy=accuracy,
        accuracy_low=low,
        accuracy_high=high,
        p50_ms=float(np.percentile(latency, 50)) if latency.size else None,
        p99_ms=float(np.percentile(latency, 99)) if latency.size else None,
    )


def ab_report(
    log: PredictionLog,
    model: str,
    *,
    since: datetime | None = None,
    champion: str = "production",
    candidate: str | None = None,
    confidence: float = 0.95,
    min_labels: int = MIN_LABELS,
) -> ABReport:
    """Compare the variants ``champion`` and ``candidate`` (default: the other variant
    with the most requests) of ``model`` in the prediction log since ``since``."""
    from scipy.stats import norm

    from modelyard.monitoring import joined

    if not 0.5 <= confidence < 1:
        raise InvalidInputError(f"confidence {confidence} is not in [0.5, 1); give e.g. 0.95")
    table = log.read(model, since=since)
    predictions: pd.DataFrame = table.to_pandas() if table.num_rows else pd.DataFrame()
    if since is not None and len(predictions):
        predictions = predictions[predictions["ts"] >= since]
    if predictions.empty:
        raise InvalidInputError(
            f"no logged predictions of model '{model}' in this window; serve it with an A/B "
            "test (a serve spec's ab = {candidate, key}) and send requests, or look further back"
        )
    seen = predictions["variant"].value_counts()
    if champion not in seen.index:
        raise InvalidInputError(
            f"no requests of model '{model}' went to variant '{champion}' in this window; "
            f"its variants are {', '.join(map(str, seen.index))}: name one with --champion"
        )
    if candidate == champion:
        raise InvalidInputError(
            f"--candidate and --champion are both '{champion}'; name the other variant "
            f"(its variants are {', '.join(map(str, seen.index))})"
        )
    if candidate is None:
        rest = [str(v) for v in seen.index if v != champion]
        candidate = rest[0] if rest else None
    elif candidate not in seen.index:
        raise InvalidInputError(
            f"no requests of model '{model}' went to variant '{candidate}' in this window; "
            f"its variants are {', '.join(map(str, seen.index))}: name one with --candidate"
        )
    labelled = joined(log, model, since=since)
    if labelled.empty:
        labelled = pd.DataFrame(columns=["variant", "output.prediction", "label"])
    z = float(norm.ppf(0.5 + confidence / 2))
    first = _variant(champion, predictions, labelled, z)
    second = None if candidate is None else _variant(candidate, predictions, labelled, z)
    others = [str(v) for v in seen.index if v not in (champion, candidate)]

    def verdict_of(
        verdict: Verdict, reason: str, interval: tuple[float, float, float] | None = None
    ) -> ABReport:
        d, low, high = interval if interval is not None else (None, None, None)
        return ABReport(
            model=model,
            since=since,
            confidence=confidence,
            champion=first,
            candidate=second,
            difference=d,
            difference_low=low,
            difference_high=high,
            verdict=verdict,
            reason=reason,
            others=others,
        )

    if second is None:
        return verdict_of(
            "keep_collecting",
            f"only variant '{champion}' answered in this window: no A/B test is running "
            "(serve with a spec whose model table has ab = {candidate, key})",
        )
    short = [r for r in (first, second) if r.labelled < min_labels]
    if short:
        names = ", ".join(f"'{r.variant}' has {r.labelled}" for r in short)
        return verdict_of(
            "keep_collecting",
            f"too few labels to compare: {names} (at least {min_labels} each); "
            "send labels to POST /v1/feedback",
        )
    a = (round((first.accuracy or 0) * first.labelled), first.labelled)
    b = (round((second.accuracy or 0) * second.labelled), second.labelled)
    d, low, high = newcombe(a, b, z)
    level = f"{confidence:.0%}"
    points = f"{abs(d) * 100:.1f} points ({level} interval {low * 100:+.1f} to {high * 100:+.1f})"
    slower = _slower(first, second)
    verdict: Verdict
    if low > 0:
        verdict, reason = "promote", f"'{candidate}' is more accurate by {points}{slower}"
    elif high < 0:
        verdict, reason = "keep_champion", f"'{candidate}' is less accurate by {points}"
    else:
        need = labels_needed(a[0] / a[1], b[0] / b[1], z)
        verdict = "keep_collecting"
        reason = (
            f"no difference shown yet: {d * 100:+.1f} points, the {level} interval "
            f"{low * 100:+.1f} to {high * 100:+.1f} holds 0; about {need} labels per variant "
            f"would show a difference of {max(abs(d), 0.01) * 100:.1f} points ({POWER:.0%} power)"
        )
    return verdict_of(verdict, reason, (d, low, high))


def _slower(first: VariantResult, second: VariantResult) -> str:
    if first.p99_ms and second.p99_ms and second.p99_ms > 1.5 * first.p99_ms:
        return f", though its p99 latency is {second.p99_ms:.1f} ms against {first.p99_ms:.1f} ms"
    return ""
