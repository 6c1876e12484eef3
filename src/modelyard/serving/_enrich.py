"""Online-feature enrichment: requests carry entity keys, the server adds the features.

A model registered with a ``FeatureBinding`` reads its feature service from the online
store, the same service it was trained from, so training and serving cannot drift
apart silently. The request schema is the model's inputs minus the service's features,
plus any entity key the model does not take itself. Missing or expired values follow
the binding's policy: reject (422 naming the feature and the row) or a declared default.

An online store that is down or does not answer within its timeouts is a missing value
for every row: with ``on_missing="default"`` the declared defaults are served (counted
in ``modelyard_features_missing_total`` like any missing value, and logged once per
outage); with ``on_missing="reject"`` the request fails fast with 503
``online_store_unavailable``. A breaker (``_breaker.py``) keeps a hanging store from
costing every request a full read timeout, and closes again once the store answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelyard.contracts import Schema
from modelyard.errors import (
    BackendUnavailableError,
    ConfigError,
    FieldError,
    OnlineStoreUnavailableError,
    SchemaValidationError,
)
from modelyard.serving._breaker import Breaker

if TYPE_CHECKING:
    from modelyard.features import OnlineReader
    from modelyard.registry import FeatureBinding

Columns = dict[str, Any]


class Enricher:
    """Fills a model's feature inputs from the online store, by the request's keys."""

    def __init__(
        self, binding: FeatureBinding, reader: OnlineReader, inputs: Schema, *, model: str = ""
    ) -> None:
        self.binding = binding
        self.reader = reader
        self.inputs = inputs
        self.model = model
        self.breaker = Breaker("online store", model=model)
        served = reader.feature_names
        self.features = [n for n in inputs.names if n in served]
        self.request_schema = self._request_schema()
        self._check_defaults()

    def _request_schema(self) -> Schema:
        if not self.features:
            raise ConfigError(
                f"feature service '{self.binding.service}' provides none of the model's inputs "
                f"({', '.join(self.inputs.names)}); bind the service it was trained with"
            )
        fields = [f for f in self.inputs.fields if f.name not in self.features]
        taken = {f.name for f in fields}
        fields += [k for k in self.reader.key_fields if k.name not in taken]
        return Schema(fields=fields)

    def _check_defaults(self) -> None:
        if self.binding.on_missing != "default":
            return
        lacking = [f for f in self.features if f not in self.binding.defaults]
        if lacking:
            raise ConfigError(
                f"on_missing='default' needs a default for every feature; "
                f"add defaults for {', '.join(lacking)}"
            )

    def fill(self, columns: Columns, on_missing: Callable[[str, int], None]) -> Columns:
        """The model's input columns: request fields plus features, in signature order.

        ``on_missing(feature, count)`` is told how many values were missing or expired.
        """
        keys = {k.name: columns[k.name] for k in self.reader.key_fields}
        found = self._read(keys)
        if found is None:  # the store is unavailable and the binding declares defaults
            rows = len(next(iter(keys.values())))
            for name in self.features:
                on_missing(name, rows)
            defaults = {n: [self.binding.defaults[n]] * rows for n in self.features}
            return {n: defaults[n] if n in defaults else columns[n] for n in self.inputs.names}
        unusable: dict[int, dict[str, str]] = {}  # row -> feature -> missing | expired
        filled: Columns = {}
        for name in self.features:
            values = found.values[name]
            states = found.status[name]
            bad = [i for i, s in enumerate(states) if s != "present"]
            if bad:
                on_missing(name, len(bad))
                if self.binding.on_missing == "reject":
                    for i in bad:
                        unusable.setdefault(i, {})[name] = states[i]
                    continue
                default = self.binding.defaults[name]
                values = [
                    default if s != "present" else v for v, s in zip(values, states, strict=True)
                ]
            filled[name] = values
        if unusable:
            errors = [e for i in sorted(unusable) for e in self._rejected(unusable[i], keys, i)]
            raise SchemaValidationError(errors)
        return {n: filled[n] if n in filled else columns[n] for n in self.inputs.names}

    def _read(self, keys: Columns) -> Any:
        """The online values, or None when the store is unavailable and defaults may serve."""
        if self.breaker.allow():
            try:
                found = self.reader.read(keys)
            except BackendUnavailableError as exc:
                self.breaker.failed(exc.message)
            except BaseException:
                self.breaker.abandoned()
                raise
            else:
                self.breaker.succeeded()
                return found
        if self.binding.on_missing == "default":
            return None
        raise OnlineStoreUnavailableError(
            f"model '{self.model}' reads features of service '{self.binding.service}' from "
            f"the online store, which is unavailable ({self.breaker.error}); retry shortly, "
            "or register the model with on_missing='default' to serve defaults meanwhile"
        )

    def _rejected(self, states: dict[str, str], keys: Columns, row: int) -> list[FieldError]:
        """One error per unusable feature of ``row``, or one for the whole row when none of
        its features is usable for one reason (an unknown key, or a store not materialized
        lately): fifteen lines saying the same would hide it."""
        whole = len(states) == len(self.features) and len(set(states.values())) == 1
        if not whole:
            return [self._missing(name, state, keys, row) for name, state in states.items()]
        key = ", ".join(f"{k}={v[row]!r}" for k, v in keys.items())
        service, count = self.binding.service, len(states)
        if "missing" in states.values():
            why = (
                f"no online features for {key} in service '{service}' ({count} features); "
                "check the key, or materialize the views that hold it"
            )
        else:
            why = (
                f"the online features of {key} in service '{service}' ({count} features) are "
                "older than their views' ttl; materialize the views, or register the model "
                "with on_missing='default'"
            )
        return [FieldError(next(iter(keys)), why, row)]

    def _missing(self, feature: str, state: str, keys: Columns, row: int) -> FieldError:
        key = ", ".join(f"{k}={v[row]!r}" for k, v in keys.items())
        why = "has no online value" if state == "missing" else "is older than its view's ttl"
        return FieldError(
            feature,
            f"feature {why} for {key}; materialize the view, or register the model with "
            "on_missing='default'",
            row,
        )
