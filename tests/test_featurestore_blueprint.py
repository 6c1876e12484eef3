"""The featurestore blueprint end to end, as a new user runs it: `modelyard quickstart
--blueprint featurestore DIR` on the real MovieLens ratings, then every numbered promise
checked on what it left: the moved log, the definitions (a streaming and two batch views,
two services sharing a feature), point-in-time training sets against an independent
as-of join, the naive join's leak, both models served with online features, a push seen
by the next request, and the backfill that rejected a broken day and completed after the
fix. The whole application takes about ten seconds; the module runs it twice (SQLite,
and Redis + PostgreSQL) plus a rerun.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from modelyard.blueprints import write_template
from modelyard.blueprints.featurestore import settings_of
from modelyard.blueprints.featurestore._aggregates import user_activity
from modelyard.blueprints.featurestore._data import load_ratings, moved, timeline_of
from modelyard.blueprints.featurestore._definitions import (
    ACTIVITY_VIEW,
    DEFAULTS,
    ENGAGEMENT_SERVICE,
    MOVIE_VIEW,
    RATING_SERVICE,
    SHARED,
)
from modelyard.blueprints.featurestore._offline import rating_rows
from modelyard.blueprints.featurestore._quickstart import STATE, quickstart
from modelyard.errors import ConfigError

pytestmark = pytest.mark.slow

# Today, as the quickstart writes it: the online values' ttl is judged by the wall clock.
ANCHOR = datetime.now(UTC).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ...]]:
    """The quickstart run once through the command line, as a user types it."""
    folder = tmp_path_factory.mktemp("fs") / "movies"
    write_template("featurestore", folder)
    config = folder / "modelyard.toml"
    text = config.read_text()
    config.write_text(
        text.replace('name = "featurestore"', f'name = "featurestore"\nanchor = "{ANCHOR}"')
    )
    ran = subprocess.run(
        [sys.executable, "-m", "modelyard", "quickstart", "--blueprint", "featurestore"]
        + [str(folder), "--no-serve"],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
            "COLUMNS": "250",
        },
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    with modelyard.Workspace(folder) as ws:
        state = json.loads((folder / STATE).read_text())
        yield ws, ran.stdout, state


def test_the_quickstart_says_what_it_did_and_how_to_call_both_models(done: tuple) -> None:
    _, out, _ = done
    assert "backfill: day" in out and "rejected (range(movie_mean_rating)" in out
    assert "read the future in the naive join" in out
    assert f"{SHARED} went" in out
    assert "/v1/models/rating/predict" in out and "/v1/models/engagement/predict" in out
    assert "serve it with: modelyard serve rating@production engagement@production" in out


def test_the_log_is_moved_by_whole_weeks_to_end_in_the_week_before_the_anchor(
    done: tuple,
) -> None:
    raw = load_ratings()
    assert len(raw) == 100_004 and raw["user_id"].nunique() == 671
    anchor = datetime.fromisoformat(ANCHOR).replace(tzinfo=UTC)
    timeline = timeline_of(raw, anchor, 30, 14)
    assert timeline.shift % timedelta(days=7) == timedelta(0)
    assert anchor - timedelta(days=7) < timeline.log_end <= anchor
    log = moved(raw, timeline)
    assert (log["ts"].dt.day_of_week == raw["ts"].dt.day_of_week).all()
    assert timeline.stream_start == timeline.log_end - timedelta(days=30)


def test_two_entities_three_views_and_two_services_that_share_a_feature(done: tuple) -> None:
    ws, _, _ = done
    kinds: dict[str, set[str]] = {}
    for kind, name, _ in ws.features.list():
        kinds.setdefault(kind, set()).add(name)
    assert kinds["entity"] == {"user", "movie"}
    assert kinds["view"] == {"user_activity", "user_profile", "movie_stats"}
    rating, engagement = (
        ws.features.service(RATING_SERVICE),
        ws.features.service(ENGAGEMENT_SERVICE),
    )
    assert SHARED in rating.features and SHARED in engagement.features
    assert ws.features.view(ACTIVITY_VIEW).tags["kind"] == "streaming"
    assert ws.features.view(MOVIE_VIEW).tags["kind"] == "batch"
    # The streaming view is fed by push: its pushed rows are files of their own offline.
    pushed = list((ws.features.offline_root / "push" / ACTIVITY_VIEW).glob("*.parquet"))
    assert len(pushed) >= 2
    # Both models are bound to their services (the server reads them online).
    for model, service in (("rating", RATING_SERVICE), ("engagement", ENGAGEMENT_SERVICE)):
        version = ws.registry.get(f"{model}@production")
        assert version.features is not None and version.features.service == service


def test_training_sets_agree_with_an_independent_as_of_join(done: tuple) -> None:
    """The point-in-time join against pandas' merge_asof over the same rows: each row
    reads the user's newest activity row at or before its time, within the 30-day ttl."""
    ws, _, _ = done
    settings = settings_of(ws)
    assert settings.anchor is not None
    raw = load_ratings()
    timeline = timeline_of(raw, settings.anchor, settings.stream_days, settings.backfill_days)
    ratings = moved(raw, timeline)
    rows = rating_rows(ratings, timeline.stream_start).sample(3000, random_state=0)
    rows = rows.sort_values("event_timestamp").reset_index(drop=True)
    got = ws.features.get_historical(rows, [SHARED])
    activity = user_activity(ratings[ratings["ts"] < pd.Timestamp(timeline.stream_start)])
    expected = pd.merge_asof(
        rows,
        activity.sort_values("event_timestamp"),
        on="event_timestamp",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(days=30) - pd.Timedelta(microseconds=1),
    )
    assert got["ratings_30d"].fillna(-1).tolist() == expected["ratings_30d"].fillna(-1).tolist()
    assert got["ratings_30d"].notna().mean() > 0.5  # most rows have a value: not all missing


def test_the_naive_join_reads_the_future_and_inflates_the_offline_metric(done: tuple) -> None:
    ws, _, state = done
    rating, engagement = state["models"]["rating"], state["models"]["engagement"]
    for model in (rating, engagement):
        assert 0 < model["future_rows"] <= model["rows"]
        assert set(model["per_view"]) == set(model["views"])
    # RMSE: the naive model claims less error than it makes when served, and than the
    # honest model makes; ROC AUC: it claims more.
    assert rating["naive_offline"] < rating["honest"] < rating["naive_served"]
    assert engagement["naive_offline"] > engagement["honest"] > engagement["naive_served"]
    run = ws.runs.get(ws.registry.get("rating@production").run_id)
    assert run.metrics["naive_rmse_offline"] == pytest.approx(rating["naive_offline"])
    assert run.metrics["rmse"] == pytest.approx(rating["honest"])


def _ask(
    ws: modelyard.Workspace, calls: list[tuple[str, Any]], between: Any = None, log: bool = False
) -> list[Any]:
    import anyio
    import httpx

    from modelyard.serving import create_app

    app = create_app(
        ws.registry,
        ["rating@production", "engagement@production"],
        features=ws.features,
        poll_interval_s=0,
        prediction_log=ws.predictions if log else None,
    )

    async def go() -> list[Any]:
        out = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for i, (model, body) in enumerate(calls):
                    if between is not None and i == len(calls) // 2:
                        between()
                    r = await client.post(f"/v1/models/{model}/predict", json=body)
                    out.append(r)
        return out

    return anyio.run(go)


def test_both_models_are_served_with_their_online_features(done: tuple) -> None:
    ws, _, state = done
    example = state["stream"]["example"]
    rating, engagement, stranger = _ask(
        ws,
        [
            ("rating", example),
            ("engagement", {"user_id": example["user_id"]}),
            ("engagement", {"user_id": 10**9}),
        ],
    )
    assert rating.status_code == 200 and 0.0 < rating.json()["prediction"]["prediction"] < 6.0
    assert engagement.status_code == 200
    assert 0.0 <= engagement.json()["prediction"]["probability_1"] <= 1.0
    # An unknown user is served the declared defaults, as the training sets read them.
    assert stranger.status_code == 200
    # The served value is the model's answer on the online features of the request's keys.
    features = ws.features.get_online(RATING_SERVICE, [example])
    assert all(s == "present" for s in features.status["ratings_30d"])
    model = ws.registry.load("rating@production")
    frame = pd.DataFrame(features.to_dicts())
    expected = float(model.predict(frame[list(DEFAULTS)])["prediction"].iloc[0])
    assert rating.json()["prediction"]["prediction"] == pytest.approx(expected)


def test_a_push_changes_what_the_next_request_reads(done: tuple) -> None:
    ws, _, state = done
    user = state["stream"]["example"]["user_id"]
    before = ws.features.get_online(ENGAGEMENT_SERVICE, {"user_id": [user]}).values["ratings_30d"]

    def push() -> None:
        ws.features.push(
            ACTIVITY_VIEW,
            {
                "user_id": user,
                "event_timestamp": datetime.now(UTC),
                "ratings_30d": 400,
                "mean_rating_30d": 1.0,
            },
        )

    first, second = _ask(ws, [("engagement", {"user_id": user})] * 2, between=push)
    after = ws.features.get_online(ENGAGEMENT_SERVICE, {"user_id": [user]}).values["ratings_30d"]
    assert before != [400] and after == [400]
    assert first.status_code == second.status_code == 200
    assert first.json()["prediction"] != second.json()["prediction"]


def test_the_server_answers_feature_lookups_as_get_online_does(done: tuple) -> None:
    import anyio
    import httpx

    from modelyard.serving import create_app

    ws, _, state = done
    user = state["stream"]["example"]["user_id"]
    app = create_app(ws.registry, [], features=ws.features, poll_interval_s=0)

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return [
                    await client.get(f"/v1/features/{ENGAGEMENT_SERVICE}?user_id={user}&user_id=0"),
                    await client.post(
                        f"/v1/features/{RATING_SERVICE}",
                        json={"entities": [state["stream"]["example"]]},
                    ),
                    await client.get("/v1/features/engagement_v2?user_id=1"),
                ]

    engagement, rating, unknown = anyio.run(go)
    assert engagement.status_code == 200 and rating.status_code == 200
    body = engagement.json()
    columns = dict(zip(body["features"], body["results"], strict=True))
    expected = ws.features.get_online(ENGAGEMENT_SERVICE, {"user_id": [user, 0]})
    for name in expected.names:
        assert columns[name]["values"] == expected.values[name]
        assert columns[name]["statuses"] == expected.status[name]
    assert columns["ratings_30d"]["statuses"] == ["present", "missing"]  # user 0 never rated
    assert set(rating.json()["features"]) >= {"user_id", "movie_id", "movie_ratings"}
    assert unknown.status_code == 404 and "engagement_v1" in unknown.json()["message"]


def test_a_served_prediction_leads_back_to_the_source_fingerprints(done: tuple) -> None:
    from modelyard.monitoring import lineage_of

    ws, _, state = done
    [answer] = _ask(ws, [("rating", state["stream"]["example"])], log=True)
    chain = lineage_of(ws, answer.json()["request_id"])
    assert chain.prediction is not None and chain.version["name"] == "rating"
    [service] = chain.features
    assert service["service"] == RATING_SERVICE and service["version"] == 1
    views = {v["name"]: v for v in service["views"]}
    assert set(views) == {"user_activity", "user_profile", "movie_stats"}
    assert all(v["fingerprint"].startswith("sha256:") for v in views.values())
    # The training set was built after the backfill: movie_stats' lineage names its range.
    assert views["movie_stats"]["backfilled"]


def test_the_backfill_rejected_the_broken_day_and_completed_after_the_fix(done: tuple) -> None:
    ws, _, state = done
    backfill = state["backfill"]
    first = backfill["first"]
    rejected = [p for p in first if p["status"] == "rejected"]
    assert [p["start"] for p in rejected] == [backfill["bad_day"]]
    assert [c.split(":")[0] for c in rejected[0]["checks"]] == [
        "range(movie_mean_rating)",
        "null_rate(movie_mean_rating)",
        "unique_keys",
    ]
    assert sum(p["status"] == "written" for p in first) == len(first) - 1
    assert [p["status"] for p in backfill["rerun"] if p["status"] != "skipped"] == ["written"]
    assert backfill["complete"]
    status = ws.features.backfill_status(MOVIE_VIEW)
    assert status["rejected"] == [] and len(status["covered"]) == 1
    start, end = status["covered"][0]
    assert (end - start) == timedelta(days=14)


def test_a_second_run_goes_on_without_redoing_the_steps(done: tuple) -> None:
    ws, _, state = done
    runs = len(ws.runs.search())
    pushed = len(list((ws.features.offline_root / "push" / ACTIVITY_VIEW).glob("*.parquet")))
    result = quickstart(ws)
    assert len(ws.runs.search()) == runs
    assert (
        len(list((ws.features.offline_root / "push" / ACTIVITY_VIEW).glob("*.parquet"))) == pushed
    )
    assert result["version"].version == state["models"]["rating"]["version"]
    assert result["more"][0]["model"] == "engagement"


def test_a_stream_stopped_part_way_pushes_no_day_twice(done: tuple) -> None:
    """As if the quickstart was killed on the stream's last day: the days recorded as done
    are not pushed again, the last day is."""
    ws, _, _ = done
    root = Path(ws.config.root)
    saved = (root / STATE).read_text()
    state = json.loads(saved)
    assert state["stream_done"]["through"] < state["stream"]["demo"]["day"]
    del state["stream"]
    (root / STATE).write_text(json.dumps(state))
    folder = ws.features.offline_root / "push" / ACTIVITY_VIEW
    before = len(list(folder.glob("*.parquet")))
    try:
        quickstart(ws)
        assert len(list(folder.glob("*.parquet"))) == before + 1  # the last day, once
    finally:
        (root / STATE).write_text(saved)


def test_a_second_quickstart_of_the_workspace_is_refused_while_one_runs(done: tuple) -> None:
    from modelyard.blueprints._lock import only_one
    from modelyard.errors import ConflictError

    ws, _, _ = done
    with only_one(Path(ws.config.root), "featurestore"):
        with pytest.raises(ConflictError, match="another quickstart of this workspace"):
            quickstart(ws)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"bad_day": 20}, "bad_day 20 is outside the backfill window of 14 days"),
        ({"anchor": "2026-11-02T10:00:00"}, "is not the start of a day"),
        ({"anchor": 5}, "is not a day"),
        ({"stream_dayz": 3}, "the keys are name, anchor"),
        ({"rating_model": "engagement"}, "must be two names"),
        ({"stream_days": True}, "blueprint.stream_days: Input should be a valid integer"),
        ({"bad_day": "5"}, "blueprint.bad_day: Input should be a valid integer"),
    ],
)
def test_a_settings_mistake_is_one_line_naming_the_key(table: dict[str, Any], message: str) -> None:
    from modelyard.blueprints.featurestore import parse_settings

    with pytest.raises(ConfigError, match=message) as raised:
        parse_settings({"name": "featurestore", **table})
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (f'anchor = "{ANCHOR}"', 'anchor = "2026-06-01"', f'set up with anchor = "{ANCHOR}"'),
        ("backfill_days = 14", "backfill_days = 7", "set up with backfill_days = 14 (now 7)"),
        ("bad_day = 5", "bad_day = 2", "set up with bad_day = 5 (now 2)"),
        (f'anchor = "{ANCHOR}"', 'anchor = "2099-01-01"', "2099-01-01 is in the future"),
        (f'anchor = "{ANCHOR}"', "", f'set up with anchor = "{ANCHOR}"; put that line back'),
    ],
    ids=["anchor", "backfill_days", "bad_day", "future", "anchor-removed"],
)
def test_a_changed_setting_is_refused_before_anything_is_written(
    done: tuple, old: str, new: str, message: str
) -> None:
    ws, _, _ = done
    root = Path(ws.config.root)
    config = root / "modelyard.toml"
    text = config.read_text()
    lines = [line for line in text.splitlines() if line.startswith(old)]
    assert lines, f"no line {old!r} in modelyard.toml"
    config.write_text(text.replace(lines[0], new))
    state = (root / STATE).read_text()
    try:
        with modelyard.Workspace(root) as moved_ws:
            with pytest.raises(ConfigError, match=re.escape(message)) as raised:
                quickstart(moved_ws)
        assert "\n" not in raised.value.message
        assert (root / STATE).read_text() == state
        assert config.read_text() == text.replace(lines[0], new)  # nothing written into it
    finally:
        config.write_text(text)


def test_a_redis_that_is_down_is_one_line_before_any_step(tmp_path: Path) -> None:
    from modelyard.errors import BackendUnavailableError

    folder = tmp_path / "down"
    write_template("featurestore", folder)
    with modelyard.Workspace(folder, online_url="redis://127.0.0.1:1/0") as ws:
        with pytest.raises(BackendUnavailableError, match="online store"):
            quickstart(ws)
    assert not (folder / "data").exists() and not (folder / STATE).exists()


@pytest.mark.postgres
def test_the_application_runs_on_redis_and_postgresql(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    import redis

    folder = tmp_path / "scaled"
    write_template("featurestore", folder)
    config = folder / "modelyard.toml"
    config.write_text(
        config.read_text().replace(
            'name = "featurestore"', f'name = "featurestore"\nanchor = "{ANCHOR}"'
        )
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # database 15 is the tests' own
    try:
        with modelyard.Workspace(folder, online_url=redis_url, metadata_url=pg_url) as ws:
            result = quickstart(ws)
            assert result["version"].name == "rating"
            user = result["example"]["user_id"]
            online = ws.features.get_online(ENGAGEMENT_SERVICE, {"user_id": [user]})
            assert online.status["ratings_30d"] == ["present"]
            assert any(k.startswith(b"modelyard:fv:user_activity") for k in client.keys())
            served = _ask(ws, [("rating", result["example"])])
            assert served[0].status_code == 200
    finally:
        client.flushdb()
