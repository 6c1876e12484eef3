"""The metadata tables (SQLAlchemy Core). Times are integer microseconds since the epoch, UTC.

Changing a table here needs a new Alembic revision in ``migrations/versions`` and a new
``HEAD`` in ``_migrate.py``; ``tests/test_migrations.py`` checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for volume.
_AutoId = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("experiment", String(200), nullable=False, index=True),
    Column("name", String(250), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("error", Text),
    Column("seed", BigInteger),
    Column("git_commit", String(64)),
    Column("environment", JSON),
    # Renewed by the run's process while it runs; a lapsed lease means it died.
    Column("lease_until", BigInteger),
    Column("user_id", String(250)),  # who started it, as an MLflow client reports
    Column("deleted_at", BigInteger),  # deleted (MLflow's lifecycle): hidden, restorable
)

# Each experiment's id, as the MLflow API numbers them; runs name their experiment.
experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", _AutoId, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("lifecycle_stage", String(16), nullable=False),  # "active" or "deleted"
    Column("tags", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

run_datasets = Table(
    "run_datasets",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id"), primary_key=True),
    Column("name", String(250), primary_key=True),
    Column("fingerprint", String(80), nullable=False),
    Column("context", String(50), nullable=False),
    Column("num_rows", BigInteger),
    Column("schema", JSON),
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id"), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("digest", String(80), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("description", Text, nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("tags", JSON),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(250), ForeignKey("registered_models.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.run_id")),
    Column("flavor", String(50), nullable=False),
    Column("artifact", String(80), nullable=False),
    Column("signature", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # {"service", "on_missing", "defaults"} when the model reads online features.
    Column("features", JSON),
    # HMAC of (name, version, artifact manifest digest) under the workspace signing key,
    # which lives outside this database (security/_seal.py); NULL: registered before seals.
    Column("seal", String(100)),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(250), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Every move of an alias, in order: "set" pushes a version, "rollback" pops back to the
# previous one, "delete" clears the stack. Rollback targets are computed from this log.
model_alias_events = Table(
    "model_alias_events",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("version", Integer),
    Column("at", BigInteger, nullable=False),
    Index("ix_model_alias_events_name_alias", "name", "alias"),
)

# MLflow 3's logged models: a model's files before (and apart from) any registry version.
# The team server keeps them so an unchanged MLflow script's log_model works; registering
# one makes an ordinary model version of its files.
logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(40), primary_key=True),
    Column("experiment_id", BigInteger, nullable=False, index=True),
    Column("name", String(500), nullable=False),
    Column("run_id", String(32)),
    Column("status", String(40), nullable=False),
    Column("model_type", String(200), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger),
)

logged_model_files = Table(
    "logged_model_files",
    metadata,
    Column("model_id", String(40), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("digest", String(80), nullable=False),
    Column("size", BigInteger, nullable=False),
)

feature_definitions = Table(
    "feature_definitions",
    metadata,
    Column("kind", String(20), primary_key=True),
    Column("name", String(250), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("digest", String(80), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

feature_watermarks = Table(
    "feature_watermarks",
    metadata,
    Column("view", String(250), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("watermark", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Monitoring results over time: one row per (evaluation, metric). ``metric`` is a dotted
# name ("drift.psi.age", "quality.roc_auc", "slo.latency_p99_ms"); ``subject`` is the
# model ("churn") or feature view ("view:driver_stats") it describes.
monitor_metrics = Table(
    "monitor_metrics",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("subject", String(250), nullable=False),
    Column("version", Integer),
    Column("variant", String(100)),
    Column("metric", String(300), nullable=False),
    Column("value", Float),
    Column("window_s", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_monitor_metrics_subject_metric_at", "subject", "metric", "at"),
)

# The state of each alert rule: "ok", "pending" (condition true, for-duration not yet
# over) or "firing". Kept so that a rule notifies once while firing, and once resolved.
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(250), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("since", BigInteger, nullable=False),
    Column("value", Float),
    Column("updated_at", BigInteger, nullable=False),
)

# Every notification sent: a rule starting to fire, or resolving.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("rule", String(250), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("subject", String(250), nullable=False),
    Column("metric", String(300), nullable=False),
    Column("value", Float),
    Column("message", Text, nullable=False),
    Column("deliveries", JSON, nullable=False),
    Column("at", BigInteger, nullable=False),
)

# One row per (job, logical date): inserting it claims the slot, so two schedulers on one
# store never run it twice. ``lease_until`` lets a live owner keep it and a crashed
# owner's slot be taken over; ``state`` is "running", "success" or "failed".
job_slots = Table(
    "job_slots",
    metadata,
    Column("job", String(250), primary_key=True),
    Column("logical_date", BigInteger, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("owner", String(100), nullable=False),
    Column("lease_until", BigInteger, nullable=False),
    Column("run_id", String(32)),
    Column("sla_alerted", Integer, nullable=False, default=0),
    Column("updated_at", BigInteger, nullable=False),
)

# Every run of a job: its attempts, times, outcome and captured log.
job_runs = Table(
    "job_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("job", String(250), nullable=False),
    Column("logical_date", BigInteger, nullable=False),
    Column("trigger", String(20), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Column("error", Text),
    Column("log", Text, nullable=False),
    Index("ix_job_runs_job_date", "job", "logical_date"),
)

# Who moved which model where, and on what evidence: gate checks, promotions,
# rollbacks and canary steps.
release_records = Table(
    "release_records",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("model", String(250), nullable=False, index=True),
    Column("action", String(30), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("alias", String(100)),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("passed", Integer),
    Column("reason", Text),
    Column("details", JSON, nullable=False),
    Column("at", BigInteger, nullable=False),
)

# The live traffic split of a served model, set by a canary rollout and followed by
# every server replica: ``percent`` of requests go to ``name@candidate``.
model_traffic = Table(
    "model_traffic",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("candidate", String(100), nullable=False),
    Column("percent", Float, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger),  # a rollout's lease (µs); NULL: set by hand, no expiry
)

# API keys: only a salted hash of each secret is kept (security/_keys.py). ``models`` is
# the list of models a key may use, NULL for all; a revoked or expired key never passes.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("models", JSON),
    Column("salt", String(64), nullable=False),
    Column("hash", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", BigInteger),
    Column("revoked_at", BigInteger),
    Column("rate", Float),  # requests per second this key may send; NULL: no limit
)

# Every admin action (alias moved, rollback, traffic changed, key created or revoked):
# who (the key's id, or the command line's user), from where, and when.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(250), nullable=False),
    Column("details", JSON, nullable=False),
    Column("key_id", String(32)),
    Column("actor", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Index("ix_audit_events_at", "at"),
)
