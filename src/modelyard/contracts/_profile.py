"""Reference profiles: per-column quantiles, histograms and category frequencies.

A ``Profile`` is what a model version keeps of its training data and what the monitor
compares live traffic against. It holds counts, never raw rows, so it can travel with
the registry entry whatever the columns' PII tags say.

Numeric columns keep two histograms over edges taken from the reference's own
quantiles: ``edges`` (``bins`` bins of roughly equal mass, for PSI and plots) and the
finer ``grid`` (every percentile, for the Kolmogorov–Smirnov statistic). Every edge of
``edges`` is also a point of ``grid``. The outer edges are -inf and +inf (implied, not
stored, so the JSON stays standard), so a current value outside the reference range
lands in an end bin. Bins are left-closed: bin ``i`` holds ``edges[i-1] <= x < edges[i]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from modelyard.contracts._schema import Schema
from modelyard.errors import InvalidInputError

OTHER = "__other__"
TOP_CATEGORIES = 50
QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_GRID_LEVELS = tuple(k / 100 for k in range(1, 100))

ProfileKind = Literal["numeric", "categorical"]


class NumericProfile(BaseModel):
    """One int64/float64 column: quantiles and reference counts per bin."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["numeric"] = "numeric"
    rows: int
    nulls: int
    quantiles: dict[str, float]
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    grid: tuple[float, ...]
    grid_counts: tuple[int, ...]

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    @property
    def bin_edges(self) -> tuple[float, ...]:
        """``edges`` with the implied outer -inf and +inf."""
        return (-np.inf, *self.edges, np.inf)


class CategoricalProfile(BaseModel):
    """One string/bool (or categories-declared) column: counts per category."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["categorical"] = "categorical"
    rows: int
    nulls: int
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    new_categories: tuple[str, ...] = ()

    @property
    def null_rate(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


ColumnProfile = Annotated[NumericProfile | CategoricalProfile, PydanticField(discriminator="kind")]


class Profile(BaseModel):
    """Per-column statistics of one data set, JSON round-trippable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int
    bins: int
    columns: dict[str, ColumnProfile]
    binned_with_reference: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> Profile:
        if isinstance(data, str | bytes):
            return cls.model_validate_json(data)
        return cls.model_validate(data)


def profile(
    data: Any,
    schema: Schema | None = None,
    *,
    bins: int = 10,
    reference: Profile | None = None,
) -> Profile:
    """Profile a pandas DataFrame or pyarrow Table.

    Args:
        schema: which columns to profile and how; inferred from the dtypes when omitted
            (datetime columns are skipped).
        reference: bin with this profile's edges and categories instead of computing
            new ones, so the result can be passed to ``drift`` as the current window.
    """
    frame = _as_frame(data)
    if bins < 2:
        raise InvalidInputError(f"bins must be at least 2, got {bins}; pass bins=10")
    if reference is not None:
        kinds = {name: col.kind for name, col in reference.columns.items()}
        _require_columns(frame, list(kinds), "the reference profile")
    else:
        kinds = column_kinds(frame, schema)
    if len(frame) == 0:
        what = "the current window" if reference is not None else "the reference data"
        raise InvalidInputError(f"no rows in {what}; profile a non-empty data set")

    def one(name: str) -> NumericProfile | CategoricalProfile:
        ref = reference.columns[name] if reference is not None else None
        if kinds[name] == "numeric":
            assert ref is None or isinstance(ref, NumericProfile)
            return _numeric(frame[name], bins, ref)
        assert ref is None or isinstance(ref, CategoricalProfile)
        return _categorical(frame[name], ref)

    # numpy's sort and pandas' value_counts release the GIL: columns run in parallel.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, kinds))
    return Profile(
        rows=len(frame),
        bins=reference.bins if reference is not None else bins,
        columns=dict(zip(kinds, results, strict=True)),
        binned_with_reference=reference is not None,
    )


def column_kinds(frame: pd.DataFrame, schema: Schema | None) -> dict[str, ProfileKind]:
    """Which columns are profiled, and as numeric or categorical."""
    if schema is not None:
        _require_columns(frame, schema.names, "the schema")
        kinds: dict[str, ProfileKind] = {}
        for f in schema.fields:
            if f.pii:  # a profile travels with the registry entry: no personal values in it
                continue
            if f.categories is not None or f.dtype in ("string", "bool"):
                kinds[f.name] = "categorical"
            elif f.dtype in ("int64", "float64"):
                kinds[f.name] = "numeric"
        return kinds
    inferred: dict[str, ProfileKind] = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) or dtype.kind in "bOSU":
            inferred[str(name)] = "categorical"
        elif dtype.kind == "M" or isinstance(dtype, pd.DatetimeTZDtype):
            continue
        elif pd.api.types.is_bool_dtype(dtype):
            inferred[str(name)] = "categorical"
        elif pd.api.types.is_numeric_dtype(dtype):
            inferred[str(name)] = "numeric"
        elif pd.api.types.is_string_dtype(dtype):
            inferred[str(name)] = "categorical"
    return inferred


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas") and hasattr(data, "schema"):  # a pyarrow Table
        frame = data.to_pandas()
        assert isinstance(frame, pd.DataFrame)
        return frame
    raise InvalidInputError(
        f"cannot profile {type(data).__name__}; pass a pandas DataFrame or a pyarrow Table"
    )


def _require_columns(frame: pd.DataFrame, names: Sequence[str], source: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"column '{missing[0]}' of {source} is missing from the data"
            f" (columns: {', '.join(map(str, frame.columns))}); add it or drop it from {source}"
        )


def _numeric(col: pd.Series, bins: int, ref: NumericProfile | None) -> NumericProfile:
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    present = values[~np.isnan(values)]
    ordered = np.sort(present)
    if ref is None:
        levels = sorted({*QUANTILE_LEVELS, *_GRID_LEVELS, *(i / bins for i in range(1, bins))})
        at = dict(zip(levels, _quantiles(ordered, levels), strict=True))
        grid = np.unique([at[q] for q in _GRID_LEVELS + tuple(i / bins for i in range(1, bins))])
        edges = np.unique([at[q] for q in (i / bins for i in range(1, bins))])
    else:
        grid, edges = np.asarray(ref.grid), np.asarray(ref.edges)
        at = dict(zip(QUANTILE_LEVELS, _quantiles(ordered, QUANTILE_LEVELS), strict=True))
    return NumericProfile(
        rows=len(values),
        nulls=len(values) - len(present),
        quantiles={str(q): at[q] for q in QUANTILE_LEVELS} if len(ordered) else {},
        edges=tuple(edges.tolist()),
        counts=tuple(_bin_counts(ordered, edges).tolist()),
        grid=tuple(grid.tolist()),
        grid_counts=tuple(_bin_counts(ordered, grid).tolist()),
    )


def _quantiles(ordered: np.ndarray, levels: Sequence[float]) -> list[float]:
    """Linear-interpolated quantiles of a sorted array (numpy's default method)."""
    if len(ordered) == 0:
        return [float("nan")] * len(levels)
    pos = np.asarray(levels) * (len(ordered) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(ordered) - 1)
    frac = pos - lo
    values = ordered[lo] + frac * (ordered[hi] - ordered[lo])
    return [float(v) for v in values]


def _bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of a sorted array in the left-closed bins (-inf, e0), [e0, e1), ..., [en, inf)."""
    cuts = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [len(ordered)])))


def _categorical(col: pd.Series, ref: CategoricalProfile | None) -> CategoricalProfile:
    counts = col.value_counts(dropna=True)
    # Keys are strings whatever the column's type, so JSON keeps them exactly.
    by_key: dict[str, int] = {}
    for value, count in zip(counts.index, counts.to_numpy(), strict=True):
        key = str(value)
        by_key[key] = by_key.get(key, 0) + int(count)
    nulls = int(len(col) - sum(by_key.values()))
    if ref is None:
        ranked = sorted(by_key.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = ranked[:TOP_CATEGORIES]
        rest = sum(n for _, n in ranked[TOP_CATEGORIES:])
        if rest or OTHER in by_key:
            kept = [kv for kv in kept if kv[0] != OTHER] + [(OTHER, rest + by_key.get(OTHER, 0))]
        return CategoricalProfile(
            rows=len(col),
            nulls=nulls,
            categories=tuple(k for k, _ in kept),
            counts=tuple(n for _, n in kept),
        )
    known = dict.fromkeys(ref.categories, 0)
    unseen: dict[str, int] = {}
    for key, n in by_key.items():
        if key in known:
            known[key] += n
        elif OTHER in known:  # the reference folded its tail: the key may be in there
            known[OTHER] += n
        else:
            unseen[key] = n
    ranked = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))
    new = ranked[:TOP_CATEGORIES]
    rest = sum(n for _, n in ranked[TOP_CATEGORIES:])
    if rest:
        new.append((OTHER, rest))
    return CategoricalProfile(
        rows=len(col),
        nulls=nulls,
        categories=(*known, *(k for k, _ in new)),
        counts=(*known.values(), *(n for _, n in new)),
        new_categories=tuple(k for k, _ in new),
    )
