"""Adaptive batching: requests for one model are queued and run as one predict call.

A batch closes when it holds ``max_batch_size`` rows, when its oldest request has
waited ``max_latency_ms``, or as soon as no more requests are arriving. While a batch
runs, the next one fills, so batches grow with load and a lone request never waits for
company. A batch that fails is run again request by request, so only the request the
model fails on gets the error.
Each caller gets its own rows back. Written by hand because neither FastAPI nor
uvicorn batch requests, and Ray Serve's batching would pull a cluster into every server.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Columns = dict[str, Any]
Predict = Callable[[Columns], Columns]


@dataclass
class _Item:
    predict: Predict
    columns: Columns
    rows: int
    future: asyncio.Future[Columns]
    max_rows: int  # the batch size of the version this request is for
    arrived: float = field(default_factory=time.perf_counter)


def concat(parts: list[Columns]) -> Columns:
    """Join validated input columns of several requests (same names, same order)."""
    if len(parts) == 1:
        return parts[0]
    out: Columns = {}
    for name in parts[0]:
        joined: list[Any] = []
        for p in parts:
            joined.extend(p[name])
        out[name] = joined
    return out


def split(outputs: Columns, sizes: list[int]) -> list[Columns]:
    """Cut batch outputs back into one set of columns per request."""
    if len(sizes) == 1:
        return [outputs]
    arrays = {n: v if isinstance(v, np.ndarray) else np.asarray(v) for n, v in outputs.items()}
    parts: list[Columns] = []
    start = 0
    for size in sizes:
        parts.append({n: a[start : start + size] for n, a in arrays.items()})
        start += size
    return parts


class Batcher:
    """Queues predict calls for one variant and runs them in batches.

    A version called inline runs its batches on the event loop, led by the first request
    of each loop turn (no task hop: at concurrency 1 a batched call costs what an
    unbatched one does); one called in a thread runs up to ``concurrency`` batches at once
    on ``executor`` (the variant's own pool) from the batcher's task, and the next batch
    fills while they run.
    """

    def __init__(
        self,
        *,
        max_latency_ms: float,
        executor: Executor | None = None,
        concurrency: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.max_latency_s = max_latency_ms / 1000
        self._executor = executor
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._free: asyncio.Semaphore | None = None
        self._concurrency = max(1, concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._inline: deque[_Item] = deque()  # led by a request, not by the task
        self._leading = False

    async def submit(
        self, predict: Predict, columns: Columns, rows: int, *, max_rows: int, inline: bool
    ) -> Columns:
        loop = asyncio.get_running_loop()
        item = _Item(predict, columns, rows, loop.create_future(), max_rows)
        if inline:
            return await self._lead(item)
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._free = asyncio.Semaphore(self._concurrency)
            self._task = loop.create_task(self._run_forever(), name="modelyard-batcher")
        self._queue.append(item)
        assert self._wakeup is not None
        self._wakeup.set()
        return await item.future

    async def _lead(self, item: _Item) -> Columns:
        """A version called on the event loop needs no task of its own: the first request
        of a loop turn leads, lets the others read this turn join (one turn of the loop),
        then runs their batches in place and hands each caller its rows."""
        self._inline.append(item)
        if self._leading:
            return await item.future
        self._leading = True
        try:
            await self._gather(self._inline, first_turn=True)
        finally:  # even when the leader is cancelled: the others are answered
            self._leading = False
            while self._inline:
                self._run_here(self._take(self._inline))
        return await item.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run_forever(self) -> None:
        assert self._wakeup is not None and self._free is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._free.acquire()  # a thread of the pool is free: the batch closes now
            batch = await self._collect()
            if not batch:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_released(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_released(self, batch: list[_Item]) -> None:
        assert self._free is not None
        try:
            await self._run(batch)
        finally:
            self._free.release()

    async def _collect(self) -> list[_Item]:
        if not self._queue:
            return []
        await self._gather(self._queue, first_turn=False)
        return self._take(self._queue)

    async def _gather(self, queue: deque[_Item], *, first_turn: bool) -> None:
        """Wait for more rows only while they keep coming: after each turn of the event
        loop (which lets requests already being read join), a batch closes if nothing new
        arrived, if it is full, or if its oldest request has waited max_latency_ms. One
        caller alone therefore never waits, and under load batches fill up."""
        first = queue[0]
        deadline = first.arrived + self.max_latency_s
        if first_turn:
            await asyncio.sleep(0)
        while _rows_queued(queue, first.predict) < first.max_rows:
            if time.perf_counter() >= deadline:
                break
            before = len(queue)
            await asyncio.sleep(0)
            if len(queue) == before:
                break

    @staticmethod
    def _take(queue: deque[_Item]) -> list[_Item]:
        """The next batch: requests for the same model version in arrival order; one that
        arrived after a hot swap waits for a batch of its own version. Compared with ==,
        not `is`: each `servable.predict` is a new bound method."""
        batch: list[_Item] = []
        rows = 0
        kept: deque[_Item] = deque()
        first: _Item | None = None
        while queue:
            item = queue.popleft()
            if item.future.done():  # the caller timed out or went away
                continue
            if first is None:
                first = item
            if item.predict != first.predict or (batch and rows + item.rows > first.max_rows):
                kept.append(item)
                continue
            batch.append(item)
            rows += item.rows
        queue.extendleft(reversed(kept))
        return batch

    def _run_here(self, batch: list[_Item]) -> None:
        """``_run`` for a version called on the event loop: no await, so a cancelled
        leader can still answer everyone."""
        if not batch:
            return
        sizes = [i.rows for i in batch]
        if self._on_batch is not None:
            self._on_batch(sum(sizes))
        try:
            parts = split(batch[0].predict(concat([i.columns for i in batch])), sizes)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            for item in batch:  # only the request the model fails on hears of it
                self._run_here([item])
            return
        except BaseException as exc:
            self._fail(batch, exc)
            raise
        for item, part in zip(batch, parts, strict=True):
            if not item.future.done():
                item.future.set_result(part)

    async def _run(self, batch: list[_Item]) -> None:
        sizes = [i.rows for i in batch]
        columns = concat([i.columns for i in batch])
        predict = batch[0].predict
        if self._on_batch is not None:
            self._on_batch(sum(sizes))
        try:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, predict, columns)
            parts = split(outputs, sizes)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            # One request's rows may be what the model fails on: run each request alone,
            # so only that caller hears about it and the others get their answers.
            for item in batch:
                await self._run([item])
            return
        except BaseException as exc:  # every waiting caller must hear about the failure
            self._fail(batch, exc)
            raise
        for item, part in zip(batch, parts, strict=True):
            if not item.future.done():
                item.future.set_result(part)

    @staticmethod
    def _fail(batch: list[_Item], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)


def _rows_queued(queue: deque[_Item], predict: Predict) -> int:
    return sum(i.rows for i in queue if i.predict == predict)
