"""Top-N items for every user from factor matrices, a block of users at a time.

The scores of a block are one matrix product (``users @ items.T``, BLAS on every core),
the items a user has already seen are set to -inf through the CSR matrix's indices, and
``argpartition`` picks the best ``k`` before only those ``k`` are sorted. Memory is the
block's score matrix (``block x items x 4`` bytes), whatever the number of users, plus
the int64 indices ``argpartition`` makes for the rows it is given. It is given a few
rows of the block at a time (``SELECT_BYTES``): on a whole block those indices are twice
the scores, on fresh pages every block, and ``top_n`` took 2.1x the time and 4.6x the
memory (bench/recommendations.py, 100,000 users x 50,000 items).

Written here rather than taken from ``implicit``'s ``recommend``: that returns the
whole result at once and runs on its own threads, where a job needs a bounded block
and partitions of users that an executor (Ray) can spread over machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

    from modelyard.backends.executors import Executor

BLOCK = 2048  # users scored per matrix product: 2048 x 50,000 floats = 400 MB at most
SELECT_BYTES = 16 << 20  # argpartition's int64 indices at a time: 41 rows of 50,000 items


@dataclass(frozen=True)
class TopN:
    """Row ``i``: the ``k`` best item indices of user row ``i`` and their scores, best first.
    A user with fewer unseen items than ``k`` has -1 items (score -inf) at the end."""

    items: np.ndarray[Any, np.dtype[np.int32]]
    scores: np.ndarray[Any, np.dtype[np.float32]]


def top_n(
    user_factors: np.ndarray[Any, Any],
    item_factors: np.ndarray[Any, Any],
    seen: sp.csr_matrix | None,
    k: int,
    *,
    block: int = BLOCK,
) -> TopN:
    """The ``k`` best unseen items of every row of ``user_factors``.

    ``seen``: a users x items CSR matrix whose stored entries are excluded (``None``:
    nothing is). ``block`` bounds the memory: one block's scores at a time.
    """
    users = np.ascontiguousarray(user_factors, dtype=np.float32)
    items_t = np.ascontiguousarray(np.asarray(item_factors, dtype=np.float32).T)
    n_users, n_items = len(users), items_t.shape[1]
    k = min(k, n_items)
    out_items = np.empty((n_users, k), dtype=np.int32)
    out_scores = np.empty((n_users, k), dtype=np.float32)
    scores = np.empty((min(block, max(n_users, 1)), n_items), dtype=np.float32)
    rows = max(1, SELECT_BYTES // (8 * max(n_items, 1)))
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        part = scores[: stop - start]
        np.matmul(users[start:stop], items_t, out=part)
        if seen is not None:
            _exclude(part, seen, start, stop)
        for first in range(0, stop - start, rows):
            at = slice(start + first, min(start + first + rows, stop))
            _select(part[first : first + rows], k, out_items[at], out_scores[at])
    out_items[~np.isfinite(out_scores)] = -1
    return TopN(out_items, out_scores)


def _select(
    part: np.ndarray[Any, Any], k: int, items: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]
) -> None:
    """The ``k`` best of each row of ``part``, best first, into ``items`` and ``scores``."""
    n_items = part.shape[1]
    best = np.argpartition(part, n_items - k, axis=1)[:, n_items - k :]
    best_scores = np.take_along_axis(part, best, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    items[:] = np.take_along_axis(best, order, axis=1)
    scores[:] = np.take_along_axis(best_scores, order, axis=1)


def _exclude(part: np.ndarray[Any, Any], seen: sp.csr_matrix, start: int, stop: int) -> None:
    """Set the seen items of users ``start:stop`` to -inf in their block of scores."""
    indptr = seen.indptr[start : stop + 1]
    cols = seen.indices[indptr[0] : indptr[-1]]
    rows = np.repeat(np.arange(stop - start), np.diff(indptr))
    part[rows, cols] = -np.inf


@dataclass(frozen=True)
class _Partition:
    user_factors: np.ndarray[Any, Any]
    item_factors: np.ndarray[Any, Any]
    seen: Any
    k: int
    block: int


def _run_partition(partition: _Partition) -> TopN:
    return top_n(
        partition.user_factors,
        partition.item_factors,
        partition.seen,
        partition.k,
        block=partition.block,
    )


def top_n_partitioned(
    executor: Executor,
    user_factors: np.ndarray[Any, Any],
    item_factors: np.ndarray[Any, Any],
    seen: sp.csr_matrix | None,
    k: int,
    *,
    partitions: int | None = None,
    block: int = BLOCK,
) -> TopN:
    """``top_n`` with the users split into ``partitions`` contiguous ranges, each a task of
    ``executor`` (local worker processes, or Ray), joined back in order."""
    count = partitions or max(1, executor.slots())
    bounds = np.linspace(0, len(user_factors), count + 1).astype(int)
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    tasks = [
        _Partition(user_factors[a:b], item_factors, None if seen is None else seen[a:b], k, block)
        for a, b in ranges
    ]
    names: Sequence[str] = [f"users {a}-{b - 1}" for a, b in ranges]
    results = executor.map(_run_partition, tasks, names=names)
    try:
        parts = [settled.get() for settled in results]
    finally:
        results.close()
    if not parts:
        width = min(k, len(item_factors))
        return TopN(np.empty((0, width), np.int32), np.empty((0, width), np.float32))
    return TopN(np.concatenate([p.items for p in parts]), np.concatenate([p.scores for p in parts]))
