"""Online-feature enrichment: requests carry entity keys, the server adds the features.

A model registered with a ``FeatureBinding`` reads its feature service from the online
store, the same service it was trained from, so training and serving cannot drift
apart silently. The request schema is the model's inputs minus the service's features,
plus any entity key the model does not take itself. Missing or expired values follow
the binding's policy: reject (422 naming the feature and the row) or a declared default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelyard.contracts import Schema
from modelyard.errors import ConfigError, FieldError, SchemaValidationError

if TYPE_CHECKING:
    from modelyard.features import OnlineReader
    from modelyard.registry import FeatureBinding

Columns = dict[str, Any]


class Enricher:
    """Fills a model's feature inputs from the online store, by the request's keys."""

    def __init__(self, binding: FeatureBinding, reader: OnlineReader, inputs: Schema) -> None:
        self.binding = binding
        self.reader = reader
        self.inputs = inputs
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
        found = self.reader.read(keys)
        errors: list[FieldError] = []
        filled: Columns = {}
        for name in self.features:
            values = found.values[name]
            states = found.status[name]
            bad = [i for i, s in enumerate(states) if s != "present"]
            if bad:
                on_missing(name, len(bad))
                if self.binding.on_missing == "reject":
                    errors.extend(self._missing(name, states[i], keys, i) for i in bad)
                    continue
                default = self.binding.defaults[name]
                values = [
                    default if s != "present" else v for v, s in zip(values, states, strict=True)
                ]
            filled[name] = values
        if errors:
            raise SchemaValidationError(errors)
        return {n: filled[n] if n in filled else columns[n] for n in self.inputs.names}

    def _missing(self, feature: str, state: str, keys: Columns, row: int) -> FieldError:
        key = ", ".join(f"{k}={v[row]!r}" for k, v in keys.items())
        why = "has no online value" if state == "missing" else "is older than its view's ttl"
        return FieldError(
            feature,
            f"feature {why} for {key}; materialize the view, or register the model with "
            "on_missing='default'",
            row,
        )
