"""The model registry: log a model under a run, register versions, move aliases, load.

Registration is one metadata transaction, after every file is already stored by
content: a crash leaves at worst an unreferenced blob, never a version without files.
Version numbers come from ``UPDATE … SET latest_version = latest_version + 1``, which
locks the model's row, so concurrent registrations get 1, 2, 3 … and never collide.
"""

from __future__ import annotations

import builtins
import difflib
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from sqlalchemy import Row, select

from modelyard import _time
from modelyard.backends.artifacts import get_tree, put_tree
from modelyard.backends.metadata import tables as t
from modelyard.contracts import Profile, RecordValidator, Schema, as_frame, profile
from modelyard.errors import ConfigError, InvalidInputError, NotFoundError
from modelyard.registry import _moves, _seals
from modelyard.registry._flavors import Predictor, detect_flavor, get_flavor, loads_pickle
from modelyard.registry._lineage import run_facts
from modelyard.registry._loaded import LoadedModel
from modelyard.registry._reference import with_outputs
from modelyard.registry._refs import ModelRef, check_alias, check_name
from modelyard.registry._signature import Signature
from modelyard.registry._versions import (
    FeatureBinding,
    LoggedModel,
    ModelVersion,
    RegisteredModel,
)
from modelyard.security import check_seal, record, seal

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.metadata import MetadataStore
    from modelyard.registry._moves import Also
    from modelyard.registry._traffic import TrafficSplit
    from modelyard.tracking import Run

logger = logging.getLogger(__name__)

META_FILE = "modelyard-model.json"
PROFILE_FILE = "reference-profile.json"
# The first rows of input_example, as JSON records: the server's docs show them.
EXAMPLE_FILE = "input-example.json"
EXAMPLE_ROWS = 3


class Registry:
    """Models, versions and aliases (``ws.registry``)."""

    def __init__(
        self,
        metadata: MetadataStore,
        artifacts: ArtifactStore,
        cache: Path,
        signing_key: Callable[[], bytes] | None = None,
    ) -> None:
        self._metadata = metadata
        self._artifacts = artifacts
        self._cache = cache
        # None only in a batch-scoring worker, which loads a version its parent checked.
        self._signing_key = signing_key
        self._safe_only = False

    def refusing_pickles(self) -> Registry:
        """This registry, but ``load`` refuses every version whose flavor unpickles a file
        (``modelyard serve --require-safe-formats``)."""
        strict = Registry(self._metadata, self._artifacts, self._cache, self._signing_key)
        strict._safe_only = True
        return strict

    def seal_of(self, name: str, version: int, artifact: str) -> str | None:
        """The seal a version gets when it is registered here (security/_seal.py)."""
        return (
            None
            if self._signing_key is None
            else seal(self._signing_key(), name, version, artifact)
        )

    def seal_version(self, ref: str | ModelRef) -> ModelVersion:
        """Seal a version that has none (registered before seals) once its files match its
        manifest; a version that has a seal keeps it (``ConflictError``)."""
        return _seals.seal_version(self, ref, self._signing_key)

    def check_seal(self, version: ModelVersion) -> None:
        """Raise ``IntegrityError`` unless ``version`` is sealed with this registry's key."""
        if self._signing_key is not None:
            check_seal(
                self._signing_key(), version.name, version.version, version.artifact, version.seal
            )

    @property
    def artifacts(self) -> ArtifactStore:
        """Where model files live; other processes (Ray tasks) load from it directly."""
        return self._artifacts

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store the registry writes to (monitoring results live there too)."""
        return self._metadata

    @property
    def direct(self) -> bool:
        """True when this registry reads the metadata database itself (False: through the
        team server, where API keys, monitoring results and audits stay on the server)."""
        return True

    def traffic(self, name: str) -> TrafficSplit | None:
        """The live traffic split of ``name`` as stored (``get_traffic``)."""
        from modelyard.registry._traffic import read_traffic

        return read_traffic(self, name)

    @property
    def cache_dir(self) -> Path:
        """The local folder model files are fetched into, by digest."""
        return self._cache

    # -- logging -------------------------------------------------------------------------
    def log_model(
        self,
        run: Run,
        model: object,
        path: str = "model",
        *,
        input_example: Any = None,
        signature: Signature | None = None,
        flavor: str | None = None,
        onnx: bool | Literal["int8", "auto"] = False,
        reference_data: Any = None,
        reference_outputs: Any = None,
    ) -> LoggedModel:
        """Save ``model`` as an artifact of ``run``; infer its signature from ``input_example``.

        ``reference_data`` (the training rows) is profiled per input column and stored
        with the model, for drift monitoring (``Registry.reference_profile``).
        ``reference_outputs`` (the model's outputs on those rows, e.g. its class
        probabilities) is profiled with them as ``output.<name>``, so drift checks follow
        the prediction distribution too.

        ``onnx=True`` (scikit-learn and text models) also keeps an ONNX copy to serve with
        onnxruntime, only if it answers like the model on ``input_example`` (see
        ``registry/flavors/onnx.py`` and ``text.py``); ``onnx="auto"`` serves that copy when it
        is exact and the model itself otherwise, noting why in the version's flavor settings
        (``onnx_refused``). ``onnx="int8"`` (text models) keeps a
        quantised copy with its measured agreement instead: never exact, so gate it.
        """
        chosen = get_flavor(flavor) if flavor is not None else detect_flavor(model)
        if signature is None and input_example is None:
            raise InvalidInputError(
                "a model needs a signature: pass input_example= (a few training rows) "
                "or signature=Signature(inputs=…, outputs=…)"
            )
        if onnx not in (False, True, "int8", "auto"):
            raise InvalidInputError(
                f"onnx={onnx!r} is not an option; use True, False, 'auto' or 'int8'"
            )
        convert = getattr(chosen, "convert_onnx", None)
        if onnx and onnx != "auto" and convert is None:
            raise InvalidInputError(
                f"onnx= converts scikit-learn and text models only, not a {chosen.name!r} model; "
                "log it without onnx=True"
            )
        if onnx and input_example is None:
            raise InvalidInputError(
                "onnx=True checks the ONNX copy against the model on input_example= rows; "
                "pass a few training rows as input_example="
            )
        with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
            folder = Path(tmp)
            settings = chosen.save(model, folder)
            if onnx and convert is not None:
                names = None if signature is None else signature.inputs.names
                rows = as_frame(input_example, names=names).head(100)
                rows = rows if names is None else rows[names]
                try:
                    mode = True if onnx == "auto" else onnx
                    settings = {**settings, **convert(model, rows, folder, mode)}
                except InvalidInputError as exc:
                    if onnx != "auto":
                        raise
                    logger.warning("serving %s without ONNX: %s", chosen.name, exc)
                    settings = {**settings, "onnx_refused": str(exc)}
            if signature is None:
                example = as_frame(input_example).head(100)
                inputs = Schema.infer(example)
                predictor = chosen.load(folder, settings)
                outputs = Schema.infer(predictor.predict(example[inputs.names]))
                signature = Signature(inputs=inputs, outputs=outputs)
            meta = {
                "flavor": chosen.name,
                "settings": settings,
                "signature": signature.to_json_dict(),
                "run_id": run.run_id,
            }
            if reference_data is not None:
                frame = as_frame(reference_data)
                missing = [n for n in signature.inputs.names if n not in frame.columns]
                if missing:
                    raise InvalidInputError(
                        f"reference_data has no column '{missing[0]}', an input of the model; "
                        "pass the training rows the model was fitted on"
                    )
                reference = profile(frame[signature.inputs.names], signature.inputs)
                if reference_outputs is not None:
                    reference = with_outputs(reference, reference_outputs, signature, len(frame))
                (folder / PROFILE_FILE).write_text(json.dumps(reference.to_json_dict()))
            elif reference_outputs is not None:
                raise InvalidInputError(
                    "reference_outputs= are the model's outputs on the reference_data= rows; "
                    "pass both"
                )
            if input_example is not None:
                _write_example(folder / EXAMPLE_FILE, input_example, signature.inputs)
            (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            digest, size = put_tree(self._artifacts, folder)
        # Registering inside the run's block must see the metrics logged so far.
        run.flush()
        run.record_artifact(path, digest, size, "model")
        return LoggedModel(run.run_id, path, digest, chosen.name, signature, size)

    # -- registering ---------------------------------------------------------------------
    def register(
        self,
        name: str,
        source: LoggedModel | str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        features: FeatureBinding | None = None,
    ) -> ModelVersion:
        """Register ``source`` (a LoggedModel or ``runs:/RUN_ID/PATH``) as a new version.

        ``features``: the feature service the server fills from the online store, so that
        requests carry only entity keys and request-time fields.
        """
        check_name(name)
        if features is not None and features.on_missing not in ("reject", "default"):
            raise InvalidInputError(
                f"on_missing={features.on_missing!r} is not a policy; use 'reject' or 'default'"
            )
        run_id, artifact = self._resolve_source(source)
        meta = self._read_meta(artifact)
        return self.register_artifact(
            name,
            artifact,
            run_id=run_id,
            flavor=meta["flavor"],
            signature=meta["signature"],
            description=description,
            tags=tags,
            features=features,
        )

    def register_artifact(
        self,
        name: str,
        artifact: str,
        *,
        run_id: str | None,
        flavor: str,
        signature: Mapping[str, Any],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        features: FeatureBinding | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Register a folder already in the artifact store (``artifact``, its manifest's
        digest) as the next version of ``name``; ``register`` and the team server's MLflow
        API both come here. ``lineage`` adds to what the run's own lineage says."""
        check_name(name)
        now = _time.now_us()
        with self._metadata.write() as conn:
            run_lineage, run_metrics, run_tags = run_facts(conn, run_id)
            self._metadata.upsert(
                conn,
                t.registered_models,
                [
                    {
                        "name": name,
                        "description": "",
                        "latest_version": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
                keys=("name",),
                update=("updated_at",),
            )
            conn.execute(
                t.registered_models.update()
                .where(t.registered_models.c.name == name)
                .values(latest_version=t.registered_models.c.latest_version + 1, updated_at=now)
            )
            number = conn.execute(
                select(t.registered_models.c.latest_version).where(
                    t.registered_models.c.name == name
                )
            ).scalar_one()
            conn.execute(
                t.model_versions.insert(),
                {
                    "name": name,
                    "version": number,
                    "run_id": run_id,
                    "flavor": flavor,
                    "artifact": artifact,
                    "signature": dict(signature),
                    "metrics": run_metrics,
                    "tags": {**run_tags, **dict(tags or {})},
                    "lineage": {**run_lineage, **dict(lineage or {})},
                    "description": description,
                    "created_at": now,
                    "features": None if features is None else features.to_json_dict(),
                    "seal": self.seal_of(name, number, artifact),
                },
            )
        return self.get(ModelRef(name, version=number))

    def _resolve_source(self, source: LoggedModel | str) -> tuple[str | None, str]:
        if isinstance(source, LoggedModel):
            return source.run_id, source.artifact
        if isinstance(source, str) and source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            with self._metadata.read() as conn:
                row = conn.execute(
                    select(t.run_artifacts.c.digest).where(
                        t.run_artifacts.c.run_id == run_id,
                        t.run_artifacts.c.path == (path or "model"),
                        t.run_artifacts.c.kind == "model",
                    )
                ).first()
            if row is None:
                raise NotFoundError(
                    f"run {run_id!r} has no model at {path or 'model'!r}; "
                    "log one with ws.registry.log_model(run, model, input_example=...)"
                )
            return run_id, str(row.digest)
        raise InvalidInputError(
            f"cannot register from {source!r}; pass a LoggedModel or 'runs:/RUN_ID/PATH'"
        )

    def _read_meta(self, artifact: str) -> dict[str, Any]:
        manifest = json.loads(self._artifacts.get(artifact))
        entry = manifest.get("files", {}).get(META_FILE)
        if entry is None:
            raise InvalidInputError(f"artifact {artifact} is not a logged model (no {META_FILE})")
        meta: dict[str, Any] = json.loads(self._artifacts.get(entry["digest"]))
        return meta

    # -- aliases -------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``name@alias`` at ``version`` (creating or moving the alias)."""
        check_alias(alias)
        target = self.get(ModelRef(check_name(name), version=int(version)))
        with self._metadata.write() as conn:
            self._metadata.upsert(
                conn,
                t.model_aliases,
                [
                    {
                        "name": name,
                        "alias": alias,
                        "version": target.version,
                        "updated_at": _time.now_us(),
                    }
                ],
                keys=("name", "alias"),
                update=("version", "updated_at"),
            )
            self._alias_event(conn, name, alias, "set", target.version)
        return self.get(ModelRef(name, version=target.version))

    def rollback(
        self, name: str, alias: str = "production", *, also: Also | None = None
    ) -> ModelVersion:
        """Move ``name@alias`` back to the version it pointed at before its last move.

        Rolling back twice goes back two moves (the alias history is a stack). ``also``
        runs in the same transaction (see ``registry/_moves.py``).
        """
        return _moves.rollback_alias(self, name, alias, also=also)

    def rollback_target(self, name: str, alias: str = "production") -> int | None:
        """The version ``rollback(name, alias)`` would move the alias to, or None when it
        has no earlier version (the dashboard offers a rollback only then)."""
        return _moves.rollback_target(self, name, alias)

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expect: int | None,
        clear_split: TrafficSplit | None = None,
        also: Also | None = None,
    ) -> ModelVersion:
        """Point ``name@alias`` at ``version`` only if it still points at ``expect`` (None:
        not set), else ``ConflictError``; see ``registry/_moves.py``."""
        return _moves.move_alias(
            self, name, alias, version, expect=expect, clear_split=clear_split, also=also
        )

    def alias_history(self, name: str, alias: str) -> list[tuple[datetime, str, int | None]]:
        """Every move of ``name@alias``, oldest first: (time, kind, version)."""
        with self._metadata.read() as conn:
            rows = conn.execute(self._events_query(name, alias)).all()
        return [(_time.to_datetime(r.at), r.kind, r.version) for r in rows]

    @staticmethod
    def _events_query(name: str, alias: str) -> Any:
        e = t.model_alias_events
        return select(e).where(e.c.name == name, e.c.alias == alias).order_by(e.c.id)

    @staticmethod
    def _alias_event(conn: Any, name: str, alias: str, kind: str, version: int | None) -> None:
        conn.execute(
            t.model_alias_events.insert(),
            {"name": name, "alias": alias, "kind": kind, "version": version, "at": _time.now_us()},
        )
        record(conn, f"alias.{kind}", name, {"alias": alias, "version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        with self._metadata.write() as conn:
            deleted = conn.execute(
                t.model_aliases.delete().where(
                    t.model_aliases.c.name == name, t.model_aliases.c.alias == alias
                )
            ).rowcount
            if deleted:
                self._alias_event(conn, name, alias, "delete", None)
        if not deleted:
            with self._metadata.read() as conn:
                known = conn.execute(
                    select(t.registered_models.c.name).where(t.registered_models.c.name == name)
                ).first()
                if known is None:
                    self._missing_model(name, conn)
            self._missing_alias(name, alias)

    # -- reading -------------------------------------------------------------------------
    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The version that ``name@alias``, ``name/version`` or ``name`` points at."""
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        with self._metadata.read() as conn:
            model = conn.execute(
                select(t.registered_models).where(t.registered_models.c.name == ref.name)
            ).first()
            if model is None:
                self._missing_model(ref.name, conn)
            number = ref.version
            if ref.alias is not None:
                number = conn.execute(
                    select(t.model_aliases.c.version).where(
                        t.model_aliases.c.name == ref.name, t.model_aliases.c.alias == ref.alias
                    )
                ).scalar()
                if number is None:
                    self._missing_alias(ref.name, ref.alias)
            elif number is None:
                number = model.latest_version
            row = conn.execute(
                select(t.model_versions).where(
                    t.model_versions.c.name == ref.name, t.model_versions.c.version == number
                )
            ).first()
            if row is None:
                raise NotFoundError(
                    f"model '{ref.name}' has no version {number}; it has versions "
                    f"1..{model.latest_version}; see 'modelyard models show {ref.name}'"
                )
            aliases = tuple(
                r[0]
                for r in conn.execute(
                    select(t.model_aliases.c.alias)
                    .where(t.model_aliases.c.name == ref.name, t.model_aliases.c.version == number)
                    .order_by(t.model_aliases.c.alias)
                )
            )
        return _version(row, aliases)

    def versions(self, name: str) -> list[ModelVersion]:
        with self._metadata.read() as conn:
            if (
                conn.execute(
                    select(t.registered_models.c.name).where(t.registered_models.c.name == name)
                ).first()
                is None
            ):
                self._missing_model(name, conn)
            aliases: dict[int, list[str]] = {}
            for r in conn.execute(select(t.model_aliases).where(t.model_aliases.c.name == name)):
                aliases.setdefault(r.version, []).append(r.alias)
            rows = conn.execute(
                select(t.model_versions)
                .where(t.model_versions.c.name == name)
                .order_by(t.model_versions.c.version)
            ).all()
        return [_version(r, tuple(sorted(aliases.get(r.version, [])))) for r in rows]

    def list(self) -> list[RegisteredModel]:
        with self._metadata.read() as conn:
            aliases: dict[str, dict[str, int]] = {}
            for r in conn.execute(select(t.model_aliases)):
                aliases.setdefault(r.name, {})[r.alias] = r.version
            rows = conn.execute(
                select(t.registered_models).order_by(t.registered_models.c.name)
            ).all()
        return [
            RegisteredModel(
                name=r.name,
                description=r.description,
                latest_version=r.latest_version,
                created_at=_time.to_datetime(r.created_at),
                updated_at=_time.to_datetime(r.updated_at),
                aliases=dict(sorted(aliases.get(r.name, {}).items())),
            )
            for r in rows
        ]

    def load(
        self, ref: str | ModelRef | ModelVersion, *, safe_only: bool | None = None
    ) -> LoadedModel:
        """Fetch a version's files (cached by digest) and load it with its flavor.

        The version's seal and every file's digest are checked before any file is read
        (``IntegrityError`` otherwise). ``safe_only`` refuses (``ConfigError``) a version
        whose flavor would unpickle a file: a pickle runs code as it loads (default: what
        ``refusing_pickles`` set).
        """
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        self.check_seal(version)
        strict = self._safe_only if safe_only is None else safe_only
        predictor = self._predictor(version.artifact, strict, version.ref)
        return LoadedModel(version, predictor, RecordValidator(version.signature.inputs))

    def predictor(self, logged: LoggedModel) -> Predictor:
        """Load a logged, not yet registered, model exactly as a server would run it.

        For scoring what will be served (the ONNX copy, say) before registering it, so
        the version's metrics describe the artifact, not the object it was saved from.
        """
        return self._predictor(logged.artifact)

    def _predictor(self, artifact: str, safe_only: bool = False, what: str = "") -> Predictor:
        folder = get_tree(self._artifacts, artifact, self._cache, verify=True)
        if not (folder / META_FILE).exists():
            raise InvalidInputError(
                f"model {what or artifact} has no {META_FILE}: its files were not logged by "
                "modelyard or its team server, so no flavor knows how to load them"
            )
        meta = json.loads((folder / META_FILE).read_text())
        flavor = get_flavor(meta["flavor"])
        settings = meta.get("settings", {})
        if safe_only and loads_pickle(flavor, settings):
            raise ConfigError(
                f"model {what or artifact} ({flavor.name} flavor) loads a pickle, which runs "
                "code; serve a safe format (log it with onnx=True, or as LightGBM, XGBoost, "
                "text), or drop --require-safe-formats"
            )
        return flavor.load(folder, settings)

    def reference_profile(self, ref: str | ModelRef | ModelVersion) -> Profile | None:
        """The training-data profile stored with a version (None if it was logged without)."""

        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        manifest = json.loads(self._artifacts.get(version.artifact))
        entry = manifest.get("files", {}).get(PROFILE_FILE)
        if entry is None:
            return None
        return Profile.from_json(self._artifacts.get(entry["digest"]))

    def input_example(
        self, ref: str | ModelRef | ModelVersion
    ) -> builtins.list[dict[str, Any]] | None:
        """The first rows of the ``input_example`` a version was logged with (JSON records)."""
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        manifest = json.loads(self._artifacts.get(version.artifact))
        entry = manifest.get("files", {}).get(EXAMPLE_FILE)
        if entry is None:
            return None
        records: builtins.list[dict[str, Any]] = json.loads(self._artifacts.get(entry["digest"]))
        return records

    # -- errors --------------------------------------------------------------------------
    def _missing_model(self, name: str, conn: Any) -> NoReturn:
        names = [r[0] for r in conn.execute(select(t.registered_models.c.name))]
        close = difflib.get_close_matches(name, names, n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else "register one with ws.registry.register(...) or run 'modelyard quickstart'"
        )
        raise NotFoundError(f"model '{name}' is not registered; {hint}")

    def _missing_alias(self, name: str, alias: str) -> NoReturn:
        with self._metadata.read() as conn:
            known = {
                r.alias: r.version
                for r in conn.execute(select(t.model_aliases).where(t.model_aliases.c.name == name))
            }
        have = ", ".join(f"{a} -> {v}" for a, v in sorted(known.items())) or "none"
        raise NotFoundError(
            f"model '{name}' has no alias '{alias}' (its aliases: {have}); "
            f"set it with 'modelyard models alias {name} {alias} VERSION'"
        )


def _version(row: Row[Any], aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        flavor=row.flavor,
        artifact=row.artifact,
        signature=Signature.from_json(row.signature),
        run_id=row.run_id,
        metrics=dict(row.metrics or {}),
        tags=dict(row.tags or {}),
        lineage=dict(row.lineage or {}),
        description=row.description,
        created_at=_time.to_datetime(row.created_at),
        aliases=aliases,
        features=FeatureBinding.from_json(row.features),
        seal=row.seal,
    )


def _write_example(path: Path, input_example: Any, inputs: Schema) -> None:
    """Keep the example's first rows (the signature's columns) as JSON records.

    The example is shown in the server's /docs: a field tagged ``pii`` is left out of it.
    """
    names = inputs.names
    try:
        frame = as_frame(input_example, names=names).head(EXAMPLE_ROWS)
    except (InvalidInputError, ValueError):
        return  # an example only the flavor reads (an image tensor, say): no record to show
    if not set(names) <= set(frame.columns):
        return
    shown = [f.name for f in inputs.fields if not f.pii]
    path.write_text(frame[shown].to_json(orient="records", date_format="iso", date_unit="s"))
