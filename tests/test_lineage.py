"""Lineage of a served prediction, end to end: a FileSource view with pushed rows, a
service, a training set built with ``run=``, a model registered bound to the service and
served in process, a prediction, and then its chain (``monitoring.lineage_of``, the
``modelyard lineage`` command, the dashboard's /ui/lineage page) back to the fingerprint
of the source files as they were when the training set was built. Changing the file and
the view afterwards gives the next version a new fingerprint; the first keeps its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import modelyard
from cli_support import run_cli
from modelyard.contracts import fingerprint
from modelyard.errors import ConflictError, InvalidInputError, NotFoundError
from modelyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    PostgresSource,
    SqlSource,
)
from modelyard.features._lineage import view_lineage
from modelyard.monitoring import lineage_of
from modelyard.registry import FeatureBinding
from modelyard.serving import create_app
from ui_support import get

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DRIVER = Entity("driver", {"driver_id": "int64"})


def _source(path: Path, ratings: list[float]) -> None:
    pd.DataFrame(
        {
            "driver_id": list(range(1, len(ratings) + 1)),
            "event_timestamp": pd.to_datetime([T0] * len(ratings), utc=True),
            "rating": ratings,
        }
    ).to_parquet(path)


def _view(source: Any, description: str = "") -> FeatureView:
    return FeatureView(
        "driver_stats",
        entity=DRIVER,
        source=source,
        features={"rating": "float64"},
        description=description,
    )


def _train(ws: modelyard.Workspace, name: str) -> tuple[str, pd.DataFrame]:
    """A training set of drivers 1-3 built with ``run=``; its model registered as a new
    version of ``rides`` bound to ``driver_service``. Returns (run id, training set)."""
    rows = pd.DataFrame(
        {
            "driver_id": [1, 2, 3],
            "event_timestamp": pd.to_datetime([T0 + timedelta(hours=1)] * 3, utc=True),
        }
    )
    with ws.start_run(name) as run:
        train = ws.features.get_historical(rows, "driver_service", run=run)
        model = LinearRegression().fit(train[["rating"]], train["rating"] * 2)
        logged = ws.registry.log_model(run, model, input_example=train[["rating"]])
    ws.registry.register("rides", logged, features=FeatureBinding("driver_service"))
    return run.run_id, train


def _predict(ws: modelyard.Workspace, body: Any) -> httpx.Response:
    """One prediction from ``rides@production`` served in process, features filled from
    the online store, logged in the workspace's prediction log."""
    app = create_app(
        ws.registry, ["rides@production"], features=ws.features, prediction_log=ws.predictions
    )

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.post("/v1/models/rides/predict", json=body)

    return anyio.run(go)


@dataclass
class Trail:
    ws: modelyard.Workspace
    request_id: str
    runs: list[str]
    training_sets: list[pd.DataFrame]
    before: list[dict[str, Any]]  # ws.features.lineage just before each training set


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    root = tmp_path_factory.mktemp("lineage")
    source = root / "stats.parquet"
    _source(source, [1.0, 2.0])
    ws = modelyard.Workspace.init(root / "ws", environ={})
    try:
        view = _view(FileSource(str(source)))
        ws.features.apply([DRIVER, view, FeatureService("driver_service", [view])])
        ws.features.push("driver_stats", [{"driver_id": 3, "event_timestamp": T0, "rating": 3.0}])
        ws.features.materialize(T0 - timedelta(days=1), T0 + timedelta(hours=1))

        before = [ws.features.lineage("driver_service")]
        first, train1 = _train(ws, "train-1")
        ws.registry.set_alias("rides", "production", 1)
        answer = _predict(ws, {"driver_id": 1})
        assert answer.status_code == 200, answer.text

        # Later: the source file and the view's definition change, and a new version trains.
        _source(source, [5.0, 6.0])
        changed = _view(FileSource(str(source)), description="ratings, recomputed")
        ws.features.apply([changed])
        before.append(ws.features.lineage("driver_service"))
        second, train2 = _train(ws, "train-2")
        yield Trail(ws, answer.json()["request_id"], [first, second], [train1, train2], before)
    finally:
        ws.close()


# -- the chain ---------------------------------------------------------------------------------
def test_the_chain_of_a_served_prediction_reaches_the_source_fingerprint(trail: Trail) -> None:
    ws = trail.ws

    chain = lineage_of(ws, trail.request_id)

    p = chain.prediction
    assert p is not None
    assert (p["request_id"], p["model"], p["version"], p["variant"], p["rows"]) == (
        trail.request_id,
        "rides",
        1,
        "production",
        1,
    )
    assert p["time"].tzinfo is not None
    assert abs(datetime.now(UTC) - p["time"]) < timedelta(minutes=10)
    version = ws.registry.get("rides/1")
    assert chain.version["name"] == "rides" and chain.version["version"] == 1
    assert chain.version["artifact"] == version.artifact
    assert chain.version["aliases"] == ["production"]
    assert chain.version["registered_at"] == version.created_at
    run = chain.run
    assert run is not None and run["run_id"] == trail.runs[0] and run["name"] == "train-1"
    assert run["git_commit"] == version.lineage["git_commit"]
    [dataset] = run["datasets"]
    assert dataset["name"] == "training_set:driver_service" and dataset["rows"] == 3
    assert dataset["fingerprint"] == fingerprint(trail.training_sets[0])
    [service] = chain.features
    assert (service["service"], service["version"]) == ("driver_service", 1)
    assert service["training_set"]["fingerprint"] == dataset["fingerprint"]
    [view] = service["views"]
    assert (view["name"], view["version"], view["features"]) == ("driver_stats", 1, ["rating"])
    assert view["source"]["kind"] == "parquet"
    assert view["source"]["path"].endswith("stats.parquet")
    assert (view["files"], view["pushed_files"]) == (1, 1)  # the pushed driver 3 is part of it
    assert view["fingerprint"].startswith("sha256:") and len(view["fingerprint"]) == 71
    assert view["fingerprint"] == trail.before[0]["views"][0]["fingerprint"]
    assert chain.binding == {
        "service": "driver_service",
        "recorded": True,
        "current_version": 1,
        "error": None,
    }


def test_a_changed_source_gives_the_next_version_a_new_fingerprint_and_the_old_keeps_its(
    trail: Trail,
) -> None:
    ws = trail.ws

    old = lineage_of(ws, trail.request_id).features[0]["views"][0]
    new = lineage_of(ws, "rides/2").features[0]["views"][0]

    assert new["fingerprint"] != old["fingerprint"]
    assert old["fingerprint"] == trail.before[0]["views"][0]["fingerprint"]  # kept as built
    assert new["fingerprint"] == trail.before[1]["views"][0]["fingerprint"]
    assert (old["version"], new["version"]) == (1, 2)  # the view's definition moved on too
    # What the store says now is the second fingerprint: the first lives only in version 1.
    assert ws.features.lineage("driver_service")["views"][0]["fingerprint"] == new["fingerprint"]
    runs = [ws.runs.get(r) for r in trail.runs]
    assert [r.tags["features.service"] for r in runs] == ["driver_service"] * 2
    assert [r.tags["features.service_version"] for r in runs] == ["1", "1"]
    # The lineage goes into the version's lineage, not into its tags.
    assert "features.lineage" not in ws.registry.get("rides/1").tags
    assert ws.registry.get("rides/1").tags["features.service"] == "driver_service"


def test_a_model_reference_gives_the_chain_without_a_prediction(trail: Trail) -> None:
    by_alias = lineage_of(trail.ws, "rides@production")
    latest = lineage_of(trail.ws, "rides")

    assert by_alias.prediction is None and by_alias.version["version"] == 1
    assert by_alias.run is not None and by_alias.run["run_id"] == trail.runs[0]
    assert latest.prediction is None and latest.version["version"] == 2
    assert latest.run is not None and latest.run["run_id"] == trail.runs[1]


def test_an_unknown_request_id_says_where_request_ids_come_from(trail: Trail) -> None:
    with pytest.raises(NotFoundError) as caught:
        lineage_of(trail.ws, "no-such-request")

    message = caught.value.message
    assert "'no-such-request'" in message and "X-Request-ID" in message
    assert "NAME@ALIAS" in message and "\n" not in message


# -- the command line --------------------------------------------------------------------------
def test_the_command_prints_the_chain_as_a_tree(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = trail.ws
    fp = lineage_of(ws, trail.request_id).features[0]["views"][0]["fingerprint"]

    code, out, err = run_cli(capsys, "lineage", trail.request_id, "-w", str(ws.root))

    assert code == 0, err
    lines = out.splitlines()
    order = ["prediction", "model version", "run train-1", "feature service", "view", "source"]
    found = [next(i for i, line in enumerate(lines) if hop in line) for hop in order]
    assert found == sorted(found)  # each hop below the one before
    assert trail.request_id in lines[0] and "rides/1 variant production" in lines[0]
    assert "data set training_set:driver_service" in out
    assert "feature service driver_service v1" in out and "view driver_stats v1" in out
    assert f"{fp[:19]}…" in out and fp not in out  # shortened
    assert "1 file; 1 pushed" in out
    assert "serves online features of driver_service (now v1)" in out


def test_the_command_prints_json_and_fails_in_one_line_for_unknown_ids(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = trail.ws
    where = ["-w", str(ws.root)]

    code, out, err = run_cli(capsys, "lineage", "rides@production", "--json", *where)
    unknown = run_cli(capsys, "lineage", "no-such-request", *where)
    bad_version = run_cli(capsys, "lineage", "rides/9", *where)

    assert code == 0, err
    assert json.loads(out) == lineage_of(ws, "rides@production").to_json_dict()
    for code, out, err in (unknown, bad_version):
        assert code == 2 and out == ""
        assert err.startswith("error:") and "Traceback" not in err
    assert "X-Request-ID" in unknown[2]
    assert "version 9" in bad_version[2]


# -- the dashboard -----------------------------------------------------------------------------
def test_the_lineage_page_links_every_hop(trail: Trail) -> None:
    ws = trail.ws
    chain = lineage_of(ws, trail.request_id)
    fp = chain.features[0]["views"][0]["fingerprint"]

    (page,) = get(ws, f"/ui/lineage?ref={trail.request_id}")

    assert page.status_code == 200
    html = page.text.split('id="chain"')[1]
    assert trail.request_id in html.split('id="hop-version"')[0]
    assert 'href="/ui/models/rides#version-1">rides/1</a>' in html
    assert f'href="/ui/runs/{trail.runs[0]}">train-1</a>' in html
    assert 'href="/ui/features?q=driver_service#service-driver_service">driver_service' in html
    assert 'href="/ui/features?q=driver_stats#view-driver_stats">driver_stats</a>' in html
    assert f'<code title="{fp}">{fp[:19]}</code>' in html
    assert f'value="{trail.request_id}"' in page.text  # the search box keeps what was asked


def test_the_lineage_page_searches_and_says_what_is_unknown(trail: Trail) -> None:
    empty, unknown, hostile = get(
        trail.ws,
        "/ui/lineage",
        "/ui/lineage?ref=no-such-request",
        f"/ui/lineage?ref={quote('<script>x</script>')}",
    )

    assert (
        empty.status_code == 200 and 'name="ref"' in empty.text and 'id="chain"' not in empty.text
    )
    assert unknown.status_code == 404 and 'role="alert"' in unknown.text
    assert "X-Request-ID" in unknown.text and 'value="no-such-request"' in unknown.text
    assert hostile.status_code in (400, 404) and "<script>x" not in hostile.text


def test_the_model_page_links_each_version_to_its_lineage(trail: Trail) -> None:
    (model,) = get(trail.ws, "/ui/models/rides")

    for version in (1, 2):
        assert f'href="/ui/lineage?ref=rides/{version}">lineage</a>' in model.text
    (page,) = get(trail.ws, "/ui/lineage?ref=rides/2")
    assert page.status_code == 200 and f'href="/ui/runs/{trail.runs[1]}">train-2</a>' in page.text


def test_the_lineage_page_renders_the_chain_in_a_browser(trail: Trail) -> None:
    from browser_support import Watched, browser, chromium_path, dashboard

    chromium_path()  # skips here without chromium (fails under CI=true)
    with dashboard(trail.ws.root, "/ui/lineage") as url:
        with browser() as chromium:
            page = chromium.new_page()
            watched = Watched()
            watched.attach(page)
            page.goto(f"{url}/ui/models/rides")
            page.click("#version-1 a.lineage-link")
            page.wait_for_load_state("networkidle")
            assert page.locator("#hop-version").inner_text().startswith("model version rides/1")
            page.fill("input[name=ref]", trail.request_id)
            page.click("#lineage-search button")
            page.wait_for_load_state("networkidle")
            assert trail.request_id in page.locator("#hop-prediction").inner_text()
            assert page.locator(".hop-view").count() == 1
            assert "sha256:" in page.locator(".hop-source").inner_text()
            page.click("#hop-run a")
            page.wait_for_load_state("networkidle")
            assert "Run train-1" in page.title()
            assert watched.console_errors == [] and watched.failed == []


# -- FeatureStore.lineage and what get_historical(run=) records ---------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[modelyard.Workspace, Path]]:
    folder = tmp_path / "stats"
    folder.mkdir()
    _source(folder / "a.parquet", [1.0, 2.0])
    ws = modelyard.Workspace.init(tmp_path / "ws", environ={})
    view = _view(FileSource(str(folder)))
    ws.features.apply([DRIVER, view, FeatureService("driver_service", [view])])
    try:
        yield ws, folder
    finally:
        ws.close()


def _print(ws: modelyard.Workspace) -> dict[str, Any]:
    view: dict[str, Any] = ws.features.lineage("driver_service")["views"][0]
    return view


def test_the_fingerprint_follows_the_files_a_read_takes(
    store: tuple[modelyard.Workspace, Path],
) -> None:
    ws, folder = store
    first = _print(ws)

    assert _print(ws)["fingerprint"] == first["fingerprint"]  # nothing changed: the same
    (folder / ".hidden.parquet").write_bytes(b"not read")
    assert _print(ws)["fingerprint"] == first["fingerprint"]  # a read skips hidden files
    _source(folder / "b.parquet", [3.0])
    added = _print(ws)
    ws.features.push("driver_stats", [{"driver_id": 9, "event_timestamp": T0, "rating": 9.0}])
    pushed = _print(ws)
    ws.features.backfill("driver_stats", T0, T0 + timedelta(days=1))
    backfilled = _print(ws)

    prints = [first, added, pushed, backfilled]
    assert len({p["fingerprint"] for p in prints}) == 4
    assert [p["files"] for p in prints] == [1, 2, 2, 2]
    assert [p["pushed_files"] for p in prints] == [0, 0, 1, 1]
    assert backfilled["backfill_files"] == 1
    assert backfilled["backfilled"] == [[T0.isoformat(), (T0 + timedelta(days=1)).isoformat()]]
    assert (
        ws.features.lineage("driver_service", fingerprint=False)["views"][0]["fingerprint"] is None
    )


def test_a_postgres_source_has_no_fingerprint_and_no_password(tmp_path: Path) -> None:
    view = _view(PostgresSource("postgresql://bob:s3cret@db:5432/rides", table="stats"))

    found = view_lineage(view, 1, ["rating"], tmp_path)

    assert found["fingerprint"] is None and found["files"] is None
    assert "PostgreSQL" in found["fingerprint_note"]
    assert found["source"]["table"] == "stats" and "s3cret" not in json.dumps(found)
    assert found["source"]["url"] == "postgresql://bob:***@db:5432/rides"


def test_a_glob_is_hashed_by_names_relative_to_it_so_a_moved_folder_keeps_its_print(
    tmp_path: Path,
) -> None:
    prints = []
    for where in ("here", "there"):
        folder = tmp_path / where / "stats"
        folder.mkdir(parents=True)
        _source(folder / "a.parquet", [1.0])
        _source(folder / "b.parquet", [2.0])
        (folder / "notes.txt").write_text("not matched")
        view = _view(FileSource(str(folder / "*.parquet")))
        prints.append(view_lineage(view, 1, ["rating"], None))

    assert [p["files"] for p in prints] == [2, 2]
    assert prints[0]["fingerprint"] == prints[1]["fingerprint"]
    _source(tmp_path / "there" / "stats" / "b.parquet", [2.5])
    changed = view_lineage(view, 1, ["rating"], None)
    assert changed["fingerprint"] != prints[0]["fingerprint"]


def test_a_sql_source_hashes_its_files_and_its_query(tmp_path: Path) -> None:
    path = tmp_path / "stats.parquet"
    _source(path, [1.0])
    query = f"SELECT * FROM read_parquet('{path}')"

    one = view_lineage(_view(SqlSource(query, paths=(str(path),))), 1, ["rating"], None)
    other = view_lineage(_view(SqlSource(query + " LIMIT 1", paths=(str(path),))), 1, [], None)

    assert one["files"] == 1 and one["fingerprint"] is not None
    assert one["fingerprint"] != other["fingerprint"]


def test_get_historical_records_on_the_run_and_refuses_what_is_not_a_run(
    store: tuple[modelyard.Workspace, Path],
) -> None:
    ws, _ = store
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": pd.to_datetime([T0], utc=True)})

    with pytest.raises(InvalidInputError, match="ws.start_run"):
        ws.features.get_historical(rows, "driver_service", run=object())
    with ws.start_run("ended") as ended:
        pass
    with pytest.raises(ConflictError, match="is finished"):
        ws.features.get_historical(rows, "driver_service", run=ended)
    with ws.start_run("refs") as run:
        table = ws.features.get_historical(rows, ["driver_stats:rating"], run=run, output="arrow")
    info = ws.runs.get(run.run_id)

    [dataset] = info.datasets
    assert dataset["name"] == "training_set" and dataset["rows"] == 1
    assert dataset["fingerprint"] == fingerprint(table.to_pandas())
    [recorded] = json.loads(info.tags["features.lineage"])
    assert recorded["service"] is None and recorded["views"][0]["name"] == "driver_stats"
    assert "features.service" not in info.tags
