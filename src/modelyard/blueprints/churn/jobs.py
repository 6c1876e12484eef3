"""Job functions of the churn workspace: ``[jobs.NAME] function = "…churn.jobs:NAME"``.

Each opens the job's workspace, reads its ``[blueprint]`` settings and runs one step of
``_pipeline.py`` for the newest day that ended by the end of its slot, so the scheduler,
``jobs run --date`` and ``jobs backfill`` all mean the same day by the same slot.
"""

from __future__ import annotations

from modelyard.blueprints.churn import _pipeline
from modelyard.blueprints.churn._config import settings_of
from modelyard.blueprints.churn._daily import day_name
from modelyard.jobs import JobContext
from modelyard.release import Promotion

__all__ = ["drift", "features", "score", "train"]


def features(ctx: JobContext) -> dict[str, object]:
    """The day's events and every customer's features as of its end (checked, online)."""
    settings = settings_of(ctx.workspace)
    done = _pipeline.make_features(ctx.workspace, settings, ctx.interval_end)
    ctx.log.info(
        "%s: %d events, features of %d customers in %s",
        day_name(settings.start, done.day),
        done.events,
        done.customers,
        done.path.name,
    )
    return {"day": day_name(settings.start, done.day), "events": done.events}


def train(ctx: JobContext) -> dict[str, object]:
    """Train a candidate on the labelled cut-offs; promote it only through the gates."""
    settings = settings_of(ctx.workspace)
    done = _pipeline.train_model(ctx.workspace, settings, ctx.interval_end)
    metrics, promotion = done.trained.metrics, done.promotion
    ctx.log.info(
        "%s: %s version %d on %d rows: PR AUC %.4f (baseline %.4f), ROC AUC %.4f, threshold %.3f",
        day_name(settings.start, done.day),
        settings.model_name,
        done.trained.version.version,
        done.rows,
        metrics["pr_auc"],
        done.trained.baseline["pr_auc"],
        metrics["roc_auc"],
        done.trained.curve.best,
    )
    ctx.log.info("release: %s", _verdict(promotion))
    return {"version": done.trained.version.version, "promoted": promotion.moved}


def score(ctx: JobContext) -> dict[str, object]:
    """Score the customers still with us; ``params.executor`` = local | ray | ray://…"""
    settings = settings_of(ctx.workspace)
    executor = ctx.params.get("executor")
    done = _pipeline.score_customers(
        ctx.workspace, settings, ctx.interval_end, executor=str(executor) if executor else None
    )
    ctx.log.info(
        "%s: scored %d customers with version %d in %.2f s; %d retention offers",
        day_name(settings.start, done.day),
        done.rows,
        done.version,
        done.seconds,
        done.offers,
    )
    return {"day": day_name(settings.start, done.day), "rows": done.rows, "offers": done.offers}


def drift(ctx: JobContext) -> dict[str, object]:
    """Check the model's alert rules (feature and score drift) as of the slot's end."""
    settings = settings_of(ctx.workspace)
    results = _pipeline.check_drift(ctx.workspace, settings, ctx.interval_end)
    for result in results:
        value = "no data" if result.value is None else f"{result.value:.4f}"
        note = f" ({result.note})" if result.note else ""
        error = f" error: {result.error}" if result.error else ""
        ctx.log.info("rule %s: %s = %s%s%s", result.rule.name, result.state, value, note, error)
    firing = sorted(r.rule.name for r in results if r.state in ("firing", "undelivered"))
    return {"checked": len(results), "firing": firing}


def _verdict(promotion: Promotion) -> str:
    if promotion.moved:
        return f"promoted version {promotion.to_version} to production"
    failed = [] if promotion.report is None else [r.gate for r in promotion.report.failures]
    kept = f"kept version {promotion.from_version} in production"
    return kept + (f"; failed: {', '.join(failed)}" if failed else "")
