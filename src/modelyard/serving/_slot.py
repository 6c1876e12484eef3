"""A slot serves one model reference (``churn@production``) and follows its alias.

The slot keeps the current version and the one before it loaded. When the alias
moves, the new version is loaded beside the current one and swapped in with one
assignment, so in-flight requests finish on the version they started with and no
request fails. Moving the alias back (a rollback) swaps to the kept version at once.
A version that fails to load leaves the current one serving and is reported.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard._redact import redact
from modelyard.contracts import RecordValidator, Schema
from modelyard.errors import UncomputableInputError
from modelyard.serving._calls import CallPlan
from modelyard.serving._enrich import Enricher

if TYPE_CHECKING:
    from modelyard.features import OnlineReader
    from modelyard.registry import LoadedModel, ModelRef, ModelVersion, Registry

logger = logging.getLogger("modelyard.serving")

ReaderFactory = Callable[[str], "OnlineReader"]


@dataclass
class Servable:
    """A loaded version with the request contract the server checks before calling it."""

    model: LoadedModel
    request_schema: Schema
    validator: RecordValidator
    enricher: Enricher | None
    load_seconds: float
    plan: CallPlan = CallPlan(inline=False, max_batch_size=1)  # how it is called (_calls.py)

    @property
    def version(self) -> int:
        return self.model.number

    @cached_property  # asked on every OIP request; fixed for a loaded version
    def tensor_inputs(self) -> dict[str, Any]:
        """Fields the model takes as an array per row over OIP (an image model's pixels),
        each with its row encoder (``serving/_tensors.py``)."""
        found = getattr(self.model.predictor, "tensor_inputs", None)
        return dict(found) if found else {}

    @property
    def pii_fields(self) -> dict[str, bool | str]:
        """Request fields the prediction log must hash or drop, by their ``pii`` tag."""
        return {f.name: f.pii for f in self.request_schema.fields if f.pii}

    def predict(self, columns: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.model.predict_columns(columns)
        except Exception as exc:
            fault = self._floating_point_fault(columns)
            if fault is None:
                raise
            raise UncomputableInputError(
                f"model '{self.model.name}' failed on this input after a floating-point "
                f"{fault} ({type(exc).__name__}: {str(exc)[:200]}); the values are "
                "far outside its training data: send values in the range it was trained on"
            ) from exc

    def _floating_point_fault(self, columns: dict[str, Any]) -> str | None:
        """Inputs near ±1.8e308 are valid but can overflow inside the model (a scaler's
        division, say). After a failure the call is made again with numpy's floating-point
        errors recorded: a model that raised after one failed on the input, not on its own
        bug, and answers 422, not 500. Only a failure pays for this (the error state costs
        about a microsecond a call, on every call)."""
        faults: list[str] = []
        with np.errstate(all="call", under="ignore", call=lambda kind, _: faults.append(kind)):
            try:
                self.model.predict_columns(columns)
            except Exception:
                pass
        return faults[0] if faults else None

    def check_outputs(self, outputs: dict[str, Any]) -> None:
        """Refuse NaN or infinite float outputs the signature does not allow (422)."""
        for name in self._finite_outputs:
            values = outputs.get(name)
            if values is None or _all_finite(values):
                continue
            array = np.asarray(values)
            if array.dtype.kind != "f":
                continue
            bad = np.flatnonzero(~np.isfinite(array))
            if not bad.size:  # the fast pass's sum of large finite values overflowed
                continue
            row = int(bad[0])
            raise UncomputableInputError(
                f"model '{self.model.name}' gave {array[row]} for output '{name}' in row {row}: "
                "the input is beyond what the model computes with (values far outside its "
                "training data); send values in the range it was trained on"
            )

    @cached_property
    def _finite_outputs(self) -> tuple[str, ...]:
        outputs = self.model.version.signature.outputs.fields
        return tuple(f.name for f in outputs if f.dtype == "float64" and not f.allow_non_finite)


Planner = Callable[["Servable"], CallPlan]


def load_servable(
    registry: Registry,
    version: ModelVersion,
    readers: ReaderFactory | None,
    plan: Planner | None = None,
) -> Servable:
    started = time.perf_counter()
    model = registry.load(version)
    enricher = None
    schema = version.signature.inputs
    validator = model.validator
    if version.features is not None:
        if readers is None:
            raise RuntimeError("this server has no feature store to read online features from")
        reader = readers(version.features.service)
        enricher = Enricher(version.features, reader, schema, model=version.name)
        schema = enricher.request_schema
        validator = RecordValidator(schema)
    servable = Servable(model, schema, validator, enricher, 0.0)
    if plan is not None:
        servable.plan = plan(servable)
    servable.load_seconds = time.perf_counter() - started
    return servable


class ModelSlot:
    """``ref`` resolved, loaded and kept current (``label`` names it in responses and logs)."""

    def __init__(
        self,
        registry: Registry,
        ref: ModelRef,
        label: str,
        readers: ReaderFactory | None = None,
        plan: Planner | None = None,
        on_swap: Callable[[Servable], None] | None = None,
        on_load_failure: Callable[[int, str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.ref = ref
        self.label = label
        self._readers = readers
        self._plan = plan
        self._on_swap = on_swap
        self._on_load_failure = on_load_failure
        self.current: Servable | None = None
        self.previous: Servable | None = None
        self.load_error: str | None = None
        self.resolve_error: str | None = None  # the metadata store did not answer
        self.failed_version: int | None = None

    @property
    def ready(self) -> bool:
        return self.current is not None

    def load(self) -> Servable:
        """First load: errors propagate, so a bad reference fails the server at start."""
        target = self.registry.get(self.ref)
        servable = load_servable(self.registry, target, self._readers, self._plan)
        self._install(servable)
        return servable

    def refresh(self) -> bool:
        """Follow the reference; return True when the served version changed."""
        try:
            target = self.registry.get(self.ref)
        except LookupError as exc:  # the alias or model was deleted: a real misconfiguration
            self.load_error = f"cannot resolve {self.ref}: {exc}"
            return False
        except Exception as exc:
            # The metadata store is down or slow: keep serving what is loaded, and say so
            # (readiness reports it as degraded, never as not ready: every replica would
            # be drained at once by an outage that does not stop predictions).
            if self.resolve_error is None:
                logger.warning(
                    "alias not followed: metadata store unavailable",
                    extra={"model": self.ref.name, "ref": str(self.ref), "error": redact(str(exc))},
                )
            self.resolve_error = redact(f"cannot resolve {self.ref}: {exc}")
            return False
        self.resolve_error = None
        current = self.current
        if current is not None and current.version == target.version:
            # The alias points at what is served (again): an earlier failure is over.
            self.load_error = None
            self.failed_version = None
            return False
        if self.previous is not None and self.previous.version == target.version:
            self._install(self.previous)
            return True
        if self.failed_version == target.version:
            return False  # already reported; retry only when the alias moves again
        try:
            servable = load_servable(self.registry, target, self._readers, self._plan)
        except Exception as exc:
            self.failed_version = target.version
            self.load_error = f"version {target.version} failed to load: {exc}"
            logger.exception(
                "model load failed",
                extra={"model": self.ref.name, "version": target.version, "ref": str(self.ref)},
            )
            if self._on_load_failure is not None:
                self._on_load_failure(target.version, self.load_error)
            return False
        self._install(servable)
        return True

    def swap_to_previous(self) -> Servable:
        """Serve the kept previous version now (the admin rollback); the current is kept."""
        if self.previous is None:
            raise LookupError("no previous version is loaded")
        self._install(self.previous)
        assert self.current is not None
        return self.current

    def _install(self, servable: Servable) -> None:
        if self.current is not None and self.current is not servable:
            self.previous = self.current
        self.current = servable
        self.load_error = None
        self.failed_version = None
        logger.info(
            "model serving",
            extra={
                "model": self.ref.name,
                "version": servable.version,
                "variant": self.label,
                "ref": str(self.ref),
                "load_ms": round(servable.load_seconds * 1000, 2),
                **servable.plan.describe(),
            },
        )
        if self._on_swap is not None:
            self._on_swap(servable)


def _all_finite(values: Any) -> bool:
    """The fast pass of ``check_outputs``: a sum is finite when every value is. A small
    batch is summed in Python (a tenth of a numpy call's cost); False sends it to the
    exact check."""
    try:
        if isinstance(values, np.ndarray):
            if values.dtype.kind != "f":
                return True
            if values.size > 64:
                return bool(np.isfinite(values).all())
            values = values.tolist()
        return math.isfinite(sum(values))
    except TypeError:  # None or text among the values: the exact check decides
        return False
