"""One served model: its slots (champion, optional candidate), batcher, cache and policy.

``infer`` is the single path every protocol (friendly REST, OIP REST, gRPC) goes
through after it has turned its payload into validated columns.

Which variant answers is decided by a ``Route`` that follows the serve spec and the
model's live traffic split (see ``_split.py``). A candidate must be able to take the
champion's requests by the registry's one rule (``registry.signature_problems``), the
rule a release checks too; an input only the candidate takes is nullable by that
rule, and gets null here, since the champion's callers do not send it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.backends.predictions import PredictionLog
from modelyard.contracts import Schema
from modelyard.errors import ConfigError, DeadlineExceededError, NotReadyError, OverloadedError
from modelyard.registry import ModelRef, Registry
from modelyard.serving._batching import Batcher
from modelyard.serving._cache import PredictionCache, make_cache, row_keys
from modelyard.serving._calls import CallPlan, plan_calls
from modelyard.serving._metrics import ServerMetrics
from modelyard.serving._options import ABTest, ServeOptions, Shadow
from modelyard.serving._router import Policy, choose
from modelyard.serving._slot import ModelSlot, ReaderFactory, Servable
from modelyard.serving._split import SplitFollower, check_candidate

logger = logging.getLogger("modelyard.serving")

Columns = dict[str, Any]

# The (version, variant) the current request was routed to. A request that fails has
# no Inference, and its error line must still be charged to the variant that failed,
# not to the champion: a canary's error-rate check reads exactly that.
ROUTED: ContextVar[tuple[int, str] | None] = ContextVar("modelyard_routed", default=None)


@dataclass(eq=False)
class Variant:
    """One variant's own resources: threads, batcher, and the requests it holds now."""

    label: str
    threads: int
    executor: ThreadPoolExecutor
    batcher: Batcher
    inflight: int = 0  # admitted and not yet answered (the event loop's count: no lock)

    async def close(self) -> None:
        await self.batcher.close()
        self.executor.shutdown(wait=False)


@dataclass
class Inference:
    version: int
    variant: str
    outputs: Columns
    rows: int
    ab_key: str | None = None


class Deployment:
    def __init__(
        self,
        registry: Registry,
        options: ServeOptions,
        metrics: ServerMetrics,
        threads: int = 2,
        readers: ReaderFactory | None = None,
        log: PredictionLog | None = None,
    ) -> None:
        self.options = options
        self.log = log
        self.ref = ModelRef.parse(options.ref)
        self.name = self.ref.name
        self.metrics = metrics
        self._registry = registry
        self._readers = readers
        self._threads = options.threads or threads
        self._rng = random.Random()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._variants: dict[str, Variant] = {}
        self._closing: dict[asyncio.Task[None], Variant] = {}  # retired, closed after a grace
        self._loop: asyncio.AbstractEventLoop | None = None  # set by the first request
        policy = options.policy
        self.champion = self._slot(self.ref)
        self._static: ModelSlot | None = None  # the serve spec's candidate
        if policy is not None:
            self._static = self._slot(ModelRef(self.name, alias=policy.candidate))
        self._split = SplitFollower(
            registry,
            self.name,
            self.champion.label,
            policy,
            self._static,
            self._split_slot,
            self._check_candidate,
            self._retire,
        )
        self.cache: PredictionCache | None = None
        if options.cache != "off":
            self.cache = make_cache(
                options.cache,
                url=options.cache_url,
                max_entries=options.cache_size,
                ttl_s=options.cache_ttl_s,
                model=self.name,
                on_error=self._count_cache_error,
            )

    def _slot(self, ref: ModelRef) -> ModelSlot:
        label = ref.alias if ref.alias is not None else f"v{ref.version or 'latest'}"
        if label in self._variants:
            raise ConfigError(
                f"model '{self.name}': the candidate is the same reference as the champion "
                f"({ref}); name another alias"
            )
        self._add_variant(label)
        return self._new_slot(ref, label)

    def _split_slot(self, alias: str) -> ModelSlot:
        """A slot for a traffic split's candidate (built in the poller's thread)."""
        if alias not in self._variants:  # else kept from an earlier split of this alias
            self._add_variant(alias)
        return self._new_slot(ModelRef(self.name, alias=alias), alias)

    def _retire(self, label: str) -> None:
        """Remove a split candidate's variant once no route uses it (poller's thread).

        A request routed just before keeps the variant it took (``infer`` looks it up with
        the route); its batcher is closed after ``timeout_ms``, when every such request
        has been answered or has timed out.
        """
        variant = self._variants.pop(label, None)
        loop = self._loop
        if variant is None:
            return
        if loop is None:  # no request ever ran: the batcher started no task
            variant.executor.shutdown(wait=False)
            return
        try:
            loop.call_soon_threadsafe(self._close_later, variant)
        except RuntimeError:  # the loop is closed: the server has stopped
            variant.executor.shutdown(wait=False)

    def _close_later(self, variant: Variant) -> None:
        async def close() -> None:
            await asyncio.sleep(self.options.timeout_ms / 1000)
            await variant.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing[task] = variant
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    def _add_variant(self, label: str) -> None:
        # Each variant has its own threads: a slow candidate can only fill its own pool.
        executor = ThreadPoolExecutor(
            self._threads, thread_name_prefix=f"modelyard-{self.name}-{label}"
        )
        batcher = Batcher(
            max_latency_ms=self.options.max_latency_ms,
            executor=executor,
            concurrency=self._threads,
            on_batch=self.metrics.batch_size.labels(self.name).observe,
        )
        self._variants[label] = Variant(label, self._threads, executor, batcher)

    def _new_slot(self, ref: ModelRef, label: str) -> ModelSlot:
        return ModelSlot(
            self._registry,
            ref,
            label,
            self._readers,
            plan=self._plan,
            on_swap=self._on_swap,
            on_load_failure=lambda v, _: self.metrics.load_failures.labels(self.name, str(v)).inc(),
        )

    def _plan(self, servable: Servable) -> CallPlan:
        """How this version is called: timed at load (``_calls.py``), before it serves."""
        version = servable.model.version
        try:
            stored = self._registry.input_example(version)
        except Exception:  # the example is a hint: an unreadable one is no reason to fail
            stored = None
        return plan_calls(
            servable.predict,
            version.signature.inputs,
            stored,
            inline=self.options.inline,
            max_batch_size=self.options.max_batch_size,
            user_code=version.flavor == "python",
        )

    def _on_swap(self, servable: Servable) -> None:
        self.metrics.swaps.labels(self.name).inc()
        self.metrics.load_seconds.labels(self.name, str(servable.version)).set(
            servable.load_seconds
        )

    # -- lifecycle -----------------------------------------------------------------------
    def load(self) -> None:
        self.champion.load()
        if self._static is not None:
            self._static.load()
            self._check_candidate(self._static)
        policy = self.options.policy
        if isinstance(policy, ABTest) and policy.key not in self.request_schema.names:
            raise ConfigError(
                f"A/B key '{policy.key}' of model '{self.name}' is not a request field "
                f"({', '.join(self.request_schema.names)}); choose one of those"
            )
        # A replica that starts during a rollout joins it now, not one poll later.
        self._split.follow()

    def _check_candidate(self, slot: ModelSlot) -> None:
        check_candidate(self.served, self.ref, slot)

    def refresh(self) -> bool:
        """Follow the aliases, then the traffic row (in the poller's thread: loads block)."""
        changed = self.champion.refresh()
        if self._static is not None:
            changed = self._static.refresh() or changed
        return self._split.follow() or changed

    async def close(self) -> None:
        for task in list(self._shadow_tasks):
            await task
        # A copy: the poller's thread may still be adding a candidate's variant.
        for variant in list(self._variants.values()):
            await variant.close()
        closing = list(self._closing.items())  # retired variants still in their grace
        for task, _ in closing:
            task.cancel()
        await asyncio.gather(*(task for task, _ in closing), return_exceptions=True)
        for _, variant in closing:
            await variant.close()
        if self.cache is not None:
            await self.cache.close()

    @property
    def candidate(self) -> ModelSlot | None:
        """The slot the current route sends candidate traffic to, if any."""
        return self._split.route.candidate

    @property
    def policy(self) -> Policy:
        """The traffic policy in force: the live traffic split's canary, else the spec's."""
        return self._split.route.policy

    @property
    def slots(self) -> list[ModelSlot]:
        candidate = self._split.route.candidate
        return [self.champion] + ([candidate] if candidate is not None else [])

    @property
    def served(self) -> Servable:
        current = self.champion.current
        if current is None:
            raise NotReadyError(f"model '{self.name}' is not loaded yet; retry shortly")
        return current

    @property
    def request_schema(self) -> Schema:
        return self.served.request_schema

    # -- the request path ----------------------------------------------------------------
    async def infer(
        self,
        columns: Columns,
        rows: int,
        request_id: str,
        off_champion: Callable[[], None] | None = None,
        alone: bool = False,
    ) -> Inference:
        """Columns already validated against ``request_schema``; returns the outputs.

        ``off_champion`` is called when the request is routed to a candidate: it leaves
        its model's admission count there (``_admission.py``). ``alone``: no other request
        for this model is in the server (its admission count is 1), so a version called
        on the event loop has no batch to wait for: it is called at once, as unbatched (a
        batch led on the loop would cost a turn of the loop, a concat and a split).
        """
        started = time.perf_counter()
        route = self._split.route  # once: the poller may replace it meanwhile
        use_candidate, ab_key = choose(route.policy, columns, self._rng)
        slot = route.candidate if use_candidate and route.candidate is not None else self.champion
        servable = slot.current
        if servable is None:
            slot, servable = self.champion, self.served
        if off_champion is not None and slot is not self.champion:
            off_champion()
        # Taken with the route: the poller may retire a split candidate's variant meanwhile.
        variant = self._variants.get(slot.label)
        if variant is not None and variant.inflight >= self.options.max_queue:
            self.metrics.shed(self.name, slot.label, "refused")
            raise OverloadedError(
                f"model '{self.name}' has {variant.inflight} requests waiting, its limit "
                f"(max_queue {self.options.max_queue}); retry after a second, or add replicas"
            )
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        ROUTED.set((servable.version, slot.label))
        timeout = self.options.timeout_ms / 1000
        if variant is not None:
            variant.inflight += 1
        deadline: asyncio.Timeout | None = None
        try:
            if self._waits(servable, alone):
                async with asyncio.timeout(timeout) as deadline:
                    outputs = await self._predict(slot, servable, columns, rows, variant, alone)
            else:  # nothing to wait for: the model runs on the loop, now (no timer needed)
                outputs = await self._predict(slot, servable, columns, rows, variant, alone)
        except TimeoutError:
            if deadline is None or not deadline.expired():
                raise  # a back end's own timeout, raised inside
            raise DeadlineExceededError(
                f"model '{self.name}' version {servable.version} took longer than "
                f"{self.options.timeout_ms:g} ms; retry, send fewer rows, or raise timeout_ms"
            ) from None
        finally:
            if variant is not None:
                variant.inflight -= 1
        servable.check_outputs(outputs)
        if isinstance(route.policy, Shadow) and route.candidate is not None:
            self._mirror(route.candidate, columns, rows, request_id, (servable.version, outputs))
        if self.log is not None:
            line = self.log.record(
                request_id=request_id,
                model=self.name,
                version=servable.version,
                variant=slot.label,
                inputs=columns,
                outputs=outputs,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                pii_fields=servable.pii_fields,
            )
            # Answered only once in the spool (backends/predictions).
            await self.log.append(line, alone)
        return Inference(servable.version, slot.label, outputs, rows, ab_key)

    def _waits(self, servable: Servable, alone: bool = False) -> bool:
        """Whether ``_predict`` can wait (a thread, a batch, the cache, the feature store)."""
        plan = servable.plan
        return (
            not plan.inline
            or (plan.max_batch_size > 1 and not alone)
            or self.cache is not None
            or servable.enricher is not None
        )

    async def _predict(
        self,
        slot: ModelSlot,
        servable: Servable,
        columns: Columns,
        rows: int,
        variant: Variant | None,
        alone: bool = False,
    ) -> Columns:
        if slot is not self.champion:
            missing = [n for n in servable.request_schema.names if n not in columns]
            if missing:  # nullable by the compatibility rule: what an omitted field gets
                columns = {**columns, **{n: [None] * rows for n in missing}}
        if servable.enricher is not None:  # reads the online store: never on the loop
            loop = asyncio.get_running_loop()
            columns = await loop.run_in_executor(
                self._executor_of(variant),
                servable.enricher.fill,
                columns,
                self._count_missing(servable),
            )
        if self.cache is None:
            return await self._batched(variant, servable, columns, rows, alone)
        return await self._cached(variant, servable, columns, rows)

    def _executor_of(self, variant: Variant | None) -> Executor:
        if variant is not None:
            return variant.executor
        return self._variants[self.champion.label].executor

    async def _batched(
        self,
        variant: Variant | None,
        servable: Servable,
        columns: Columns,
        rows: int,
        alone: bool = False,
    ) -> Columns:
        plan = servable.plan
        if variant is None or plan.max_batch_size == 1 or (alone and plan.inline):
            if plan.inline:
                return servable.predict(columns)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor_of(variant), servable.predict, columns)
        gauge = self.metrics.queue_depth.labels(self.name)
        gauge.inc()
        try:
            return await variant.batcher.submit(
                servable.predict,
                columns,
                rows,
                max_rows=plan.max_batch_size,
                inline=plan.inline,
            )
        finally:
            gauge.dec()

    async def _cached(
        self, variant: Variant | None, servable: Servable, columns: Columns, rows: int
    ) -> Columns:
        assert self.cache is not None
        keys = row_keys(self.name, servable.version, columns, rows)
        found = await self.cache.get_many(keys)
        misses = [i for i, hit in enumerate(found) if hit is None]
        self.metrics.cache.labels(self.name, "hit").inc(rows - len(misses))
        self.metrics.cache.labels(self.name, "miss").inc(len(misses))
        decoded: list[dict[str, Any] | None] = [
            None if h is None else orjson.loads(h) for h in found
        ]
        if misses:
            subset = {n: [v[i] for i in misses] for n, v in columns.items()}
            fresh = await self._batched(variant, servable, subset, len(misses))
            names = list(fresh)
            values = [_plain(fresh[n]) for n in names]
            new_rows = [dict(zip(names, r, strict=True)) for r in zip(*values, strict=True)]
            for i, row in zip(misses, new_rows, strict=True):
                decoded[i] = row
            await self.cache.put_many(
                [(keys[i], orjson.dumps(r)) for i, r in zip(misses, new_rows, strict=True)]
            )
        first = decoded[0]
        assert first is not None
        return {n: [r[n] for r in decoded if r is not None] for n in first}

    def _count_cache_error(self, operation: str) -> None:
        self.metrics.cache_errors.labels(self.name, operation).inc()

    def _count_missing(self, servable: Servable) -> Any:
        assert servable.enricher is not None
        policy = servable.enricher.binding.on_missing

        def count(feature: str, n: int) -> None:
            self.metrics.features_missing.labels(self.name, feature, policy).inc(n)

        return count

    def _mirror(
        self,
        slot: ModelSlot,
        columns: Columns,
        rows: int,
        request_id: str,
        answered: tuple[int, Columns],
    ) -> None:
        servable = slot.current
        variant = self._variants.get(slot.label)
        if servable is None:
            return
        if variant is not None and variant.inflight >= self.options.max_queue:
            self.metrics.shed(self.name, slot.label, "not_mirrored")
            return

        async def run() -> None:
            if variant is not None:
                variant.inflight += 1
            try:
                outputs = await self._predict(slot, servable, columns, rows, variant)
                logger.info(
                    "shadow",
                    extra={
                        "model": self.name,
                        "version": servable.version,
                        "variant": slot.label,
                        "request_id": request_id,
                        "outputs": _plain_columns(outputs),
                        "champion_version": answered[0],
                        "champion_outputs": _plain_columns(answered[1]),
                    },
                )
            except Exception:
                logger.exception(
                    "shadow prediction failed",
                    extra={
                        "model": self.name,
                        "version": servable.version,
                        "request_id": request_id,
                    },
                )
            finally:
                if variant is not None:
                    variant.inflight -= 1

        task = asyncio.get_running_loop().create_task(run())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)


def _plain(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _plain_columns(columns: Columns) -> dict[str, list[Any]]:
    return {n: _plain(v) for n, v in columns.items()}
