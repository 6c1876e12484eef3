"""The lineage of a served prediction, back to the source data (``modelyard lineage``).

prediction (request id, time, model, version, variant) -> model version (artifact,
registered at, aliases) -> the run it was logged in (git commit, seed, data sets with
fingerprints) -> the feature service its training set was built from, and its version ->
the views that service read, each with its version -> each view's source and the
fingerprint of its files when the training set was built.

Everything after the version is what the registry copied from the run at registration
(``ModelVersion.lineage``), so the chain shows what the model learned from even after the
definitions or the files changed; only the run's name is read from the run itself. The
prediction is found as ``POST /v1/feedback`` finds it: the log's request index, then its
rows, newest days first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError

if TYPE_CHECKING:
    from modelyard.backends.predictions import PredictionLog
    from modelyard.registry import ModelVersion
    from modelyard.workspace import Workspace

# How far back the log's rows are read, widening: most lookups are of recent requests.
_SPANS = (timedelta(days=1), timedelta(days=7), None)


@dataclass(frozen=True)
class Lineage:
    """One chain: each hop a plain dict (``to_json_dict`` for ``--json``)."""

    ref: str
    version: dict[str, Any]
    prediction: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    # What the training set was built from, recorded then: per service, its views.
    features: list[dict[str, Any]] = field(default_factory=list)
    # The service the version reads online (``FeatureBinding``), if any.
    binding: dict[str, Any] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = _plain(
            {
                "ref": self.ref,
                "prediction": self.prediction,
                "version": self.version,
                "run": self.run,
                "features": self.features,
                "binding": self.binding,
            }
        )
        return found


def lineage_of(ws: Workspace, ref: str) -> Lineage:
    """The chain of a logged prediction (by request id) or of a model version
    (``NAME@ALIAS``, ``NAME/VERSION``, or ``NAME`` for its latest version)."""
    text = ref.strip() if isinstance(ref, str) else ""
    if not text:
        raise InvalidInputError(
            "give a prediction's request id, or a model as NAME@ALIAS or NAME/VERSION"
        )
    prediction = None
    if "@" in text or "/" in text:  # never in a request id (serving/_request_ids.py)
        version = ws.registry.get(text)
    else:
        prediction = find_prediction(ws.predictions, text)
        if prediction is None:
            version = _model_named(ws, text, ws.predictions.feedback_days)
        elif prediction["version"] is None:
            raise NotFoundError(
                f"request {text!r} of model '{prediction['model']}' is in the prediction "
                "log's index but its rows are gone (retention or compaction); look up a "
                "newer request, or the model as NAME/VERSION"
            )
        else:
            version = ws.registry.get(f"{prediction['model']}/{prediction['version']}")
    features = [dict(f) for f in version.lineage.get("features", []) if isinstance(f, dict)]
    return Lineage(
        ref=text,
        prediction=prediction,
        version=_version(version),
        run=_run(ws, version),
        features=features,
        binding=_binding(ws, version, features),
    )


def find_prediction(log: PredictionLog, request_id: str) -> dict[str, Any] | None:
    """The logged prediction ``request_id`` (its first row), or None if the log has none."""
    import pyarrow.compute as pc

    found = log.lookup([request_id]).get(request_id)
    if found is None:
        return None
    model, rows = found
    now = datetime.now(UTC)
    for span in _SPANS:
        table = log.read(model, since=None if span is None else now - span)
        if not table.num_rows:
            continue
        hits = table.filter(pc.equal(table["request_id"], request_id))
        if hits.num_rows:
            first = hits.sort_by([("row", "ascending")]).slice(0, 1).to_pylist()[0]
            return {
                "request_id": request_id,
                "time": first.get("ts"),
                "model": model,
                "version": first.get("version"),
                "variant": first.get("variant"),
                "rows": rows,
                "latency_ms": first.get("latency_ms"),
            }
    return {"request_id": request_id, "model": model, "version": None, "rows": rows}


def _model_named(ws: Workspace, text: str, days: int) -> ModelVersion:
    """The latest version of model ``text``; else the one-line "not found" of both."""
    try:
        return ws.registry.get(text)
    except (NotFoundError, InvalidInputError):
        pass
    raise NotFoundError(
        f"no prediction logged in the last {days} days has request id {text!r}, and no model "
        "is named so; pass the id a prediction's response carried (its X-Request-ID header "
        'or its "request_id"), or a model as NAME@ALIAS or NAME/VERSION'
    )


def _version(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "artifact": v.artifact,
        "flavor": v.flavor,
        "registered_at": v.created_at,
        "aliases": list(v.aliases),
        "run_id": v.run_id,
    }


def _run(ws: Workspace, v: ModelVersion) -> dict[str, Any] | None:
    """The run as the version recorded it; its name and experiment from the run itself."""
    if v.run_id is None:
        return None
    lineage = v.lineage
    hop: dict[str, Any] = {
        "run_id": v.run_id,
        "name": None,
        "experiment": None,
        "git_commit": lineage.get("git_commit"),
        "seed": lineage.get("seed"),
        "datasets": [dict(d) for d in lineage.get("datasets", []) if isinstance(d, dict)],
        "error": None,
    }
    try:
        run = ws.runs.get(v.run_id)
    except ModelyardError as exc:  # deleted since, or the database is down: say so
        hop["error"] = exc.message
    else:
        hop.update(name=run.name, experiment=run.experiment)
    return hop


def _binding(
    ws: Workspace, v: ModelVersion, recorded: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The service the version reads online: whether its training set's lineage names it,
    and its current version (a newer one than trained on is worth seeing)."""
    if v.features is None:
        return None
    name = v.features.service
    hop: dict[str, Any] = {
        "service": name,
        "recorded": any(f.get("service") == name for f in recorded),
        "current_version": None,
        "error": None,
    }
    try:
        listed = ws.features.list()
    except ModelyardError as exc:  # DuckDB missing, or the database is down: say which
        hop["error"] = exc.message
        return hop
    hop["current_version"] = next(
        (n for kind, found, n in listed if kind == "service" and found == name), None
    )
    if hop["current_version"] is None:
        hop["error"] = f"service '{name}' is not applied in this workspace"
    return hop


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601 text, containers copied."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(x) for x in value]
    return value
