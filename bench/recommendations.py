"""The recommendations blueprint's top-N against the bare NumPy floor, and its read API
(``--part api``: ``GET /v1/recommendations/{user_id}`` against a hand-written floor; see
bench/_recs_api.py).

``--part topn`` (the top-N computation):

Every user's 10 best items from random float32 factors (seeded): 100,000 users and
50,000 items of 64 factors, and a seen matrix (CSR) of 20-50 items per user drawn from a
power-law popularity (the popular items also have the larger factors, as ALS gives
them, so that they often top a user's raw list and excluding them matters).

Sides, rotating round by round, each over the same blocks of ``--block`` users (all
users at once would be a 100,000 x 50,000 float32 score matrix: 20 GB):

- ``floor``: the bare loop, ``s = U[a:b] @ V.T; np.argpartition(s, -10, axis=1)[:, -10:]``
  (the 10 best, unsorted, seen items included);
- ``floor, seen excluded``: the same with ``s[seen[a:b].nonzero()] = -inf`` first;
- ``floor, selection by rows``: the bare loop with ``argpartition`` given the block a few
  rows at a time, as ``top_n`` does (its ``SELECT_BYTES``);
- ``top_n``: ``modelyard.blueprints.recommendations._topn.top_n`` with the seen matrix
  (seen items excluded, the 10 sorted best first);
- ``top_n_partitioned, local``: the same in one partition of users per worker (2 here) on
  the local executor's warm worker processes (its first call, worker starts included, is
  reported apart).

Peak memory: ``floor`` and ``top_n`` run once more each in a fresh process on the same
data (saved to a temporary folder); the extra memory is the process's peak RSS during
the call (VmHWM, reset through /proc/self/clear_refs) minus its RSS before it, at
``--block`` and a quarter of it.

    .venv/bin/python bench/recommendations.py [--part topn|api|all] [--rounds 3]
        [--users 100000] [--items 50000] [--factors 64] [--block 2048] [--no-memory]
        [--no-executor]
        [--api-users 100000] [--api-items 20] [--api-seconds 10] [--api-c1-seconds 5]
        [--api-stores sqlite,redis] [--api-workers 1,2] [--api-logs warning,info]
        [--api-baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, status_kb  # noqa: E402
from modelyard.blueprints.recommendations import _topn  # noqa: E402

K = 10
Data = tuple[np.ndarray, np.ndarray, sp.csr_matrix]


def load() -> float:
    return round(os.getloadavg()[0], 2)


def make_data(users: int, items: int, factors: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity /= popularity.sum()
    ids = rng.permutation(items)  # item id of popularity rank r
    user_f = rng.standard_normal((users, factors), dtype=np.float32)
    item_f = rng.standard_normal((items, factors), dtype=np.float32)
    item_f[ids] *= ((popularity / popularity[0]) ** 0.1).astype(np.float32)[:, None]
    counts = rng.integers(20, 51, users)
    cols = ids[rng.choice(items, size=int(counts.sum()), p=popularity)]
    indptr = np.concatenate([[0], np.cumsum(counts)])
    seen = sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(users, items))
    seen.sum_duplicates()  # a popular item drawn twice for one user is seen once
    seen.data[:] = 1
    return user_f, item_f, seen


# -- the sides ------------------------------------------------------------------------------
def floor(data: Data, block: int) -> np.ndarray:
    user_f, item_f, _ = data
    out = np.empty((len(user_f), K), np.int64)
    for a in range(0, len(user_f), block):
        s = user_f[a : a + block] @ item_f.T
        out[a : a + block] = np.argpartition(s, -K, axis=1)[:, -K:]
    return out


def floor_seen(data: Data, block: int) -> np.ndarray:
    user_f, item_f, seen = data
    out = np.empty((len(user_f), K), np.int64)
    for a in range(0, len(user_f), block):
        s = user_f[a : a + block] @ item_f.T
        s[seen[a : a + block].nonzero()] = -np.inf
        out[a : a + block] = np.argpartition(s, -K, axis=1)[:, -K:]
    return out


def floor_rows(data: Data, block: int) -> np.ndarray:
    user_f, item_f, _ = data
    out = np.empty((len(user_f), K), np.int64)
    rows = max(1, _topn.SELECT_BYTES // (8 * len(item_f)))
    for a in range(0, len(user_f), block):
        s = user_f[a : a + block] @ item_f.T
        for r in range(0, len(s), rows):
            part = s[r : r + rows]
            out[a + r : a + r + len(part)] = np.argpartition(part, -K, axis=1)[:, -K:]
    return out


def ours(data: Data, block: int) -> _topn.TopN:
    return _topn.top_n(data[0], data[1], data[2], K, block=block)


def partitioned(executor: Any) -> Callable[[Data, int], _topn.TopN]:
    def run(data: Data, block: int) -> _topn.TopN:
        return _topn.top_n_partitioned(executor, data[0], data[1], data[2], K, block=block)

    return run


LOCAL = {"floor": floor, "floor, seen excluded": floor_seen, "top_n": ours}
LOCAL |= {"floor, selection by rows": floor_rows}


# -- peak memory, in a fresh process per side -------------------------------------------------
def child(folder: Path, side: str, block: int) -> None:
    with np.load(folder / "data.npz") as f:
        seen = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
        data = (f["users"], f["items"], seen)
    data[0][:256] @ data[1][:4096].T  # BLAS's threads and buffers, before the baseline
    before = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    t0 = time.perf_counter()
    LOCAL[side](data, block)
    seconds = time.perf_counter() - t0
    print(json.dumps({"extra_mib": (status_kb("VmHWM") - before) / 1024, "s": seconds}))


def peak(folder: Path, side: str, block: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(folder), side, str(block)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the run ----------------------------------------------------------------------------------
def check(results: dict[str, Any], data: Data) -> dict[str, Any]:
    """Top-10 sets: top_n against the floor with the seen items excluded, the selection by
    rows against the floor; how many users' raw top-10 holds a seen item."""

    def sets(a: np.ndarray) -> np.ndarray:
        return np.sort(a, axis=1)

    got: _topn.TopN = results["top_n"]
    users = np.repeat(np.arange(len(got.items)), K)
    raw_seen = np.asarray(data[2][users, results["floor"].ravel()]).reshape(-1, K)
    return {
        "top_n vs floor, seen excluded: users differing": int(
            (sets(got.items) != sets(results["floor, seen excluded"])).any(axis=1).sum()
        ),
        "selection by rows vs floor: users differing": int(
            (sets(results["floor, selection by rows"]) != sets(results["floor"])).any(axis=1).sum()
        ),
        "top_n scores sorted best first": bool((np.diff(got.scores, axis=1) <= 0).all()),
        "top_n holds a seen item": int(np.asarray(data[2][users, got.items.ravel()]).sum()),
        "users whose raw top-10 holds a seen item": int(raw_seen.any(axis=1).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--block", type=int, default=_topn.BLOCK)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-executor", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["topn", "api", "all"], default="all")
    api = parser.add_argument_group("read API (--part api)")
    api.add_argument("--api-users", type=int, default=100_000)
    api.add_argument("--api-items", type=int, default=20, help="items per user published")
    api.add_argument("--api-seconds", type=float, default=10, help="wrk seconds a run, c=16")
    api.add_argument("--api-c1-seconds", type=float, default=5, help="wrk seconds, c=1")
    api.add_argument("--api-warmup", type=float, default=2, help="wrk seconds before round 1")
    api.add_argument("--api-stores", type=_names, default=["sqlite", "redis"])
    api.add_argument("--api-workers", type=_numbers, default=[1, 2])
    api.add_argument("--api-logs", type=_names, default=["warning", "info"])
    api.add_argument("--api-logs-dir", default="", help="keep the servers' logs here")
    api.add_argument("--api-baseline", default="", help="PYTHONPATH of a 'modelyard baseline' side")
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child[0]), args.child[1], int(args.child[2]))
    if args.part in ("topn", "all"):
        top_n_part(args)
    if args.part in ("api", "all"):
        import _recs_api

        print(f"machine {json.dumps(machine())}")
        _recs_api.run(args)


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _numbers(text: str) -> list[int]:
    return [int(t) for t in _names(text)]


def top_n_part(args: argparse.Namespace) -> None:
    print(f"load {load()} at the start; machine {json.dumps(machine())}")
    t0 = time.perf_counter()
    data = make_data(args.users, args.items, args.factors)
    print(
        f"data: {args.users:,} users x {args.items:,} items x {args.factors} factors, "
        f"{data[2].nnz:,} seen ({data[2].nnz / args.users:.1f} a user), "
        f"made in {time.perf_counter() - t0:.1f} s"
    )
    sides: dict[str, Callable[[Data, int], Any]] = dict(LOCAL)
    executor = None
    if not args.no_executor:
        from modelyard.backends.executors import open_executor

        executor = open_executor("local")
        executor.open()
        t0 = time.perf_counter()
        partitioned(executor)(data, args.block)
        cold = time.perf_counter() - t0
        half = args.users // 2  # top_n_partitioned's tasks, as it makes them
        t0 = time.perf_counter()
        sent = sum(
            len(pickle.dumps(_topn._Partition(data[0][a:b], data[1], data[2][a:b], K, args.block)))
            for a, b in ((0, half), (half, args.users))
        )
        pickling = time.perf_counter() - t0
        print(f"top_n_partitioned, first call (worker starts included): {cold:.2f} s")
        print(f"  {sent / 2**20:.0f} MiB pickled to the workers a call ({pickling:.2f} s here)")
        sides["top_n_partitioned, local"] = partitioned(executor)

    names = list(sides)
    times: dict[str, list[float]] = {n: [] for n in names}
    loads = [load()]
    results: dict[str, Any] = {}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            out = sides[name](data, args.block)
            times[name].append(time.perf_counter() - t0)
            results.setdefault(name, out)
        loads.append(load())
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names))
    if executor is not None:
        executor.close()

    base = statistics.median(times["floor"])
    print(
        f"\n{args.users:,} users x {args.items:,} items x {args.factors} factors, k={K}, "
        f"block {args.block}, {args.rounds} rounds; load {' -> '.join(map(str, loads))}\n"
    )
    print("| side | median s | best s | users/s median (best) | / floor (median) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        rate = f"{args.users / med:,.0f} ({args.users / best:,.0f})"
        print(f"| {name} | {med:.2f} | {best:.2f} | {rate} | {med / base:.2f} |")
    ratio = statistics.median(times["top_n"]) / base
    print(
        f"\ntarget top_n within 2x of the floor: {'met' if ratio <= 2 else 'NOT met'} "
        f"({ratio:.2f}x)"
    )
    for what, value in check(results, data).items():
        print(f"check: {what}: {value}")

    if not args.no_memory:
        quarter = max(1, args.block // 4)
        print(f"\npeak memory, a fresh process per side, load {load()}\n")
        print("| side | block | extra peak MiB | one block's scores MiB | expected MiB | s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        with tempfile.TemporaryDirectory() as tmp:
            seen = data[2]
            np.savez(
                Path(tmp) / "data.npz",
                users=data[0],
                items=data[1],
                data=seen.data,
                indices=seen.indices,
                indptr=seen.indptr,
                shape=np.array(seen.shape),
            )
            for name in ("floor", "top_n"):
                for block in (args.block, quarter):
                    got = peak(Path(tmp), name, block)
                    scores = min(block, args.users) * args.items * 4 / 2**20
                    # floor: the scores and argpartition's int64 indices of a whole block;
                    # top_n: the scores and those indices for SELECT_BYTES at a time
                    expected = (
                        3 * scores if name == "floor" else scores + _topn.SELECT_BYTES / 2**20
                    )
                    print(
                        f"| {name} | {block} | {got['extra_mib']:.0f} | {scores:.0f} | "
                        f"{expected:.0f} | {got['s']:.2f} |"
                    )
    print(f"\nload {load()} at the end; repo {REPO}")


if __name__ == "__main__":
    main()
