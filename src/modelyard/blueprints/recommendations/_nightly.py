"""One night of the job: refit on everything rated so far, every user's top-N, the bias
checks, and the lists published as the night's version (readers switched at once).

Each night is a tracked run (experiment ``recommendations``; its interactions' fingerprint,
the factorisation's parameters, the bias metrics and ``bias.json``) whose model is
registered as a new version tagged with the night; the published lists name that
version, so a list read from the API leads back to the ratings it was learnt from.
A night whose lists breach a bias check is not published when ``on_breach = "block"``
(the night before stays live) and alerts either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.blueprints._movielens import DAY
from modelyard.blueprints.recommendations import _data
from modelyard.blueprints.recommendations._bias import BiasReport, check_bias
from modelyard.blueprints.recommendations._model import Scorer, fit_als, popular_list
from modelyard.blueprints.recommendations._topn import TopN, top_n_partitioned
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.blueprints.recommendations._config import RecommendationsSettings
    from modelyard.serving import Publication
    from modelyard.workspace import Workspace

EXPERIMENT = "recommendations"
ALIAS = "production"
DEPTH = 10  # the read API's default k: what the bias checks judge
REPLAY = "replay"  # the job's param the quickstart sets on the nights it replays


class BlockedError(InvalidInputError):
    """The night's lists breached a bias check and were not published (no retry: the
    same data would breach again)."""


@dataclass(frozen=True)
class Night:
    """What a night did."""

    night: str
    users: int
    items: int
    interactions: int
    version: int
    run_id: str
    bias: BiasReport
    publication: Publication | None  # None: blocked, or superseded
    seconds: dict[str, float]
    ranked_on: str  # "this process", or the executor and its partitions
    superseded_by: str | None  # a newer night readers see: this (rerun) one is not published


def night_name(interval_end: datetime) -> str:
    """A night is named by the day its job publishes for (its slot's end)."""
    return f"{interval_end.astimezone(UTC):%Y-%m-%d}"


def night_number(settings: RecommendationsSettings, interval_end: datetime) -> int:
    """1 for the first night the quickstart replays, ``nights`` for the anchor's."""
    assert settings.anchor is not None
    day = interval_end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return settings.nights - round((settings.anchor - day) / DAY)


def run_night(
    ws: Workspace,
    settings: RecommendationsSettings,
    interval_end: datetime,
    *,
    executor: Any = None,
    sinks: tuple[str, ...] = (),
    log: Any = None,
) -> Night:
    """Refit, rank, check and publish the night that ends at ``interval_end``."""
    assert settings.anchor is not None
    night = night_name(interval_end)
    clock: dict[str, float] = {}
    started = time.perf_counter()
    ratings = _data.load_log(settings.anchor)
    data = _data.interactions(ratings, interval_end)
    with ws.start_run(
        f"night {night}",
        experiment=EXPERIMENT,
        seed=settings.seed,
        params=_params(settings),
        tags={"recommendations.model": settings.model_name, "recommendations.night": night},
    ) as run:
        seen = ratings[ratings["ts"] < interval_end][["user_id", "movie_id", "ts"]]
        run.log_dataset("interactions", seen.reset_index(drop=True), context="train")
        factors = fit_als(data, settings)
        clock["fit"] = time.perf_counter() - started
        at = time.perf_counter()
        lists, ranked_on = _rank(factors.users, factors.items, data, settings.k, executor)
        clock["top_n"] = time.perf_counter() - at
        genres = _data.genres_of(ratings, data.items)
        bias = check_bias(lists, data.item_counts(), genres, settings.bias, depth=DEPTH)
        run.log_metrics(
            {
                **bias.metrics(),
                "users": float(len(data.users)),
                "items": float(len(data.items)),
                "interactions": float(data.rows),
                "seconds_fit": clock["fit"],
                "seconds_top_n": clock["top_n"],
            }
        )
        run.log_dict({"night": night, **bias.as_dict()}, "bias.json")
        run.set_tag("recommendations.verdict", bias.verdict)
        scorer = Scorer(factors)
        example = seen.head(20)[["user_id", "movie_id"]].reset_index(drop=True)
        logged = ws.registry.log_model(run, scorer, input_example=example)
        version = ws.registry.register(
            settings.model_name,
            logged,
            description=f"ALS ({settings.factors} factors) on the interactions before {night}",
            tags={"night": night},
        )
        if log is not None:
            level = log.info if bias.verdict == "published" else log.warning
            level("night %s: %s", night, bias.summary())
        if bias.verdict != "published":
            _alert(ws, settings, night, bias, sinks)
        publication, newer = None, _newer_live(ws, settings, night)
        if newer is not None:
            # A rerun of a past night (jobs run --date, a backfill) recomputes and records
            # it, but never replaces the newer night readers see.
            run.set_tag("recommendations.superseded_by", newer)
            if log is not None:
                log.info("night %s: not published, readers see the newer night %s", night, newer)
        elif bias.verdict != "blocked":
            publication = _publish(ws, settings, night, data, lists, version.version)
            ws.registry.set_alias(settings.model_name, ALIAS, version.version)
            run.set_tag("recommendations.published", publication.night)
        clock["total"] = time.perf_counter() - started
    result = Night(
        night,
        len(data.users),
        len(data.items),
        data.rows,
        version.version,
        run.run_id,
        bias,
        publication,
        clock,
        ranked_on,
        newer,
    )
    if publication is None and newer is None:
        raise BlockedError(
            f"night {night}: lists not published, {bias.summary()}; the night before stays "
            'live. Loosen [blueprint.bias] or set on_breach = "warn" to publish anyway'
        )
    return result


def _newer_live(ws: Workspace, settings: RecommendationsSettings, night: str) -> str | None:
    """The night readers see, where it is newer than ``night``."""
    from modelyard.serving import RecommendationLists

    current = RecommendationLists(ws.online).current(settings.model_name)
    return current.night if current is not None and current.night > night else None


def _rank(
    users: np.ndarray[Any, Any],
    items: np.ndarray[Any, Any],
    data: _data.Interactions,
    k: int,
    executor: Any,
) -> tuple[TopN, str]:
    """Every user's top ``k``, and where it ran: in this process, or over partitions of
    users on ``executor`` (an URL such as ``ray``, or an executor)."""
    from modelyard.blueprints.recommendations._topn import top_n

    if executor is None:
        return top_n(users, items, data.matrix, k), "in this process"
    from modelyard.backends.executors import open_executor

    opened = open_executor(executor) if isinstance(executor, str) else executor
    try:
        partitions = max(1, opened.slots())
        lists = top_n_partitioned(opened, users, items, data.matrix, k, partitions=partitions)
        return lists, f"on {opened.url} in {partitions} partition(s)"
    finally:
        if isinstance(executor, str):
            opened.close()


def _publish(
    ws: Workspace,
    settings: RecommendationsSettings,
    night: str,
    data: _data.Interactions,
    lists: TopN,
    version: int,
) -> Publication:
    from modelyard.serving import RecommendationLists

    ids = np.where(lists.items >= 0, data.items[np.maximum(lists.items, 0)], -1)
    # Padding (a user with fewer unseen items than k) keeps its -inf score: the store
    # leaves such entries out, so no one is served item -1.
    scores = np.where(lists.items >= 0, lists.scores, -np.inf).astype(np.float32)
    return RecommendationLists(ws.online).publish(
        settings.model_name,
        night,
        data.users,
        ids,
        scores,
        popular_list(data, settings.k),
        version=version,
    )


def _alert(
    ws: Workspace,
    settings: RecommendationsSettings,
    night: str,
    bias: BiasReport,
    sinks: tuple[str, ...],
) -> None:
    from modelyard.monitoring import Alert, deliver

    blocked = bias.verdict == "blocked"
    now = datetime.now(UTC)
    alert = Alert(
        rule=f"{settings.model_name}-bias",
        state="firing",
        severity="error" if blocked else "warning",
        subject=settings.model_name,
        metric="bias." + ",".join(c.name for c in bias.breaches),
        value=bias.breaches[0].value,
        condition="",
        window="",
        since=now,
        at=now,
        summary=(
            f"night {night} of {settings.model_name} "
            f"{'blocked' if blocked else 'published with a warning'}: {bias.summary()}"
        ),
    )
    deliver(ws.metadata, ws.alerting, alert, sinks or ("log",))


def _params(settings: RecommendationsSettings) -> dict[str, Any]:
    return {
        "model": "implicit ALS",
        "factors": settings.factors,
        "iterations": settings.iterations,
        "regularization": settings.regularization,
        "alpha": settings.alpha,
        "k": settings.k,
    }
