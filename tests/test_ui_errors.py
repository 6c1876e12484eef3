"""The dashboard's errors and links, in process: a back end that is down answers 503 on the
error page (HTML, one line, no traceback), unknown names answer 404, a bad query parameter
400, the model server's API keeps its JSON errors, the model page's notice after an action
comes from a code and the registry (never from the address), and the pages link to each
other (run -> the versions registered from it, model <-> its monitoring, report -> the
dashboard)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

import modelyard
from modelyard.errors import ModelyardError, NotFoundError
from modelyard.registry import set_traffic
from modelyard.serving import create_app
from modelyard.ui import create_ui_app, mount_on_server
from modelyard.ui._errors import install_error_pages
from monitor_support import exchange, lower_minimums
from registry_support import doubler

HOSTILE = "<script>alert(1)</script>"
DOWN = "postgresql://postgres@127.0.0.1:5999/nothing"  # nothing listens there


def get(app: FastAPI, *paths: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [await c.get(p) for p in paths]

    return anyio.run(go)


def pages(ws: modelyard.Workspace, *paths: str) -> list[httpx.Response]:
    """``modelyard ui``'s app with the error pages (installing them again is harmless)."""
    app = create_ui_app(ws)
    install_error_pages(app)
    return get(app, *paths)


def heading(page: httpx.Response) -> str:
    found = re.search(r"<h1>(.*?)</h1>", page.text)
    assert found, page.text[:300]
    return found.group(1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    ws = modelyard.Workspace.init(tmp_path_factory.mktemp("ui-errors") / "ws", environ={})
    lower_minimums(ws, rows=1, labels=1)
    rows = pd.DataFrame({"a": [float(i) for i in range(50)]})
    with ws.start_run("trained", experiment="churn-exp") as run:
        logged = ws.registry.log_model(
            run, doubler(), input_example=rows.head(5), reference_data=rows
        )
    for _ in range(2):
        version = ws.registry.register("churn", logged)
    ws.registry.set_alias("churn", "production", version.version)
    with ws.start_run("unregistered", experiment="churn-exp") as run:
        run.log_metric("accuracy", 0.5)
    answers = exchange(ws, "churn", [("/v1/models/churn/predict", [{"a": 1.0}, {"a": 2.0}])])
    assert answers[0].status_code == 200, answers[0].text
    try:
        yield ws
    finally:
        ws.close()


def test_every_page_answers_503_when_the_metadata_database_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modelyard.Workspace.init(tmp_path / "ws", environ={}).close()
    down = modelyard.Workspace(tmp_path / "ws", environ={}, metadata_url=DOWN)
    paths = [
        "/ui/runs",
        "/ui/runs/abc",
        "/ui/runs/compare?run=a&run=b",
        "/ui/models",
        "/ui/models/x",
        "/ui/monitoring",
        "/ui/monitoring/x",
        "/ui/monitoring/x/quality",
        "/ui/monitoring/x/report",
        "/ui/monitoring/x/columns/a",
        "/ui/jobs",
        "/ui/jobs/runs/x",
        "/ui/features",
    ]
    with caplog.at_level(logging.INFO):
        answers = pages(down, *paths)
    for path, page in zip(paths, answers, strict=True):
        assert page.status_code == 503, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert heading(page) == "Back end unavailable", path
        [message] = re.findall(r'<p class="error">(.*?)</p>', page.text, re.S)
        assert "cannot open the metadata database" in message and "\n" not in message
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"


def test_a_prediction_log_that_cannot_be_read_is_not_an_empty_serving_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")  # reach the endpoint, which is down
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    modelyard.Workspace.init(tmp_path / "ws", environ={}).close()
    broken = modelyard.Workspace(
        tmp_path / "ws",
        environ={},
        predictions_url="s3://bucket/predictions",
        predictions_endpoint_url="http://127.0.0.1:1",
    )
    (page,) = pages(broken, "/ui/serving")
    assert page.status_code == 503 and heading(page) == "Back end unavailable"
    assert "No requests yet" not in page.text and "s3://bucket/predictions" in page.text


def test_unknown_names_answer_404_and_the_title_says_what_went_wrong(
    ws: modelyard.Workspace,
) -> None:
    run_id = ws.runs.search(None)[0].run_id
    nope, alias, quality, known, few, bad_window = pages(
        ws,
        "/ui/monitoring/nope",
        "/ui/monitoring/churn?alias=nope",
        "/ui/monitoring/churn/quality?alias=nope",
        "/ui/monitoring/churn",
        f"/ui/runs/compare?run={run_id}",
        "/ui/monitoring/churn?window=soon",
    )
    assert nope.status_code == 404 and heading(nope) == "Not found"
    assert "nope@production" not in nope.text and "not registered" in nope.text
    assert alias.status_code == quality.status_code == 404 and heading(alias) == "Not found"
    assert known.status_code == 200 and heading(known) == "Monitoring churn"
    assert few.status_code == 400 and heading(few) == "Bad request"
    assert "pick 2 to 5 runs" in few.text
    assert bad_window.status_code == 400 and "not a duration" in bad_window.text


def test_an_experiment_without_runs_is_said_plainly(ws: modelyard.Workspace) -> None:
    nope, known = pages(ws, "/ui/runs?experiment=nope", "/ui/runs?experiment=churn-exp")
    assert nope.status_code == 200 and "no runs in experiment 'nope'" in nope.text
    assert "Runs of nope" not in nope.text
    assert "Runs of churn-exp" in known.text and "no runs in experiment" not in known.text


def test_a_bad_query_parameter_is_a_400_page_naming_it(ws: modelyard.Workspace) -> None:
    bad, hostile = pages(
        ws, "/ui/jobs/runs/x/log?offset=-1", f"/ui/jobs/runs/x/log?offset={HOSTILE}"
    )
    assert bad.status_code == 400 and heading(bad) == "Bad request"
    assert bad.headers["content-type"].startswith("text/html")
    assert "query parameter &#39;offset&#39;" in bad.text
    assert hostile.status_code == 400 and HOSTILE not in hostile.text


def test_installing_twice_changes_nothing_and_other_paths_keep_their_handlers() -> None:
    app = FastAPI()

    @app.exception_handler(ModelyardError)
    async def api_error(request: object, exc: ModelyardError) -> Response:
        return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)

    def thing(n: int) -> Response:
        raise NotFoundError(f"no thing {n} {HOSTILE}")

    app.get("/v1/thing")(thing)
    app.get("/ui/thing")(thing)
    install_error_pages(app)
    handlers = dict(app.exception_handlers)
    install_error_pages(app)
    assert app.exception_handlers == handlers
    api, api_invalid, page, page_invalid = get(
        app, "/v1/thing?n=1", "/v1/thing?n=x", "/ui/thing?n=1", "/ui/thing?n=x"
    )
    assert api.status_code == 404 and api.json()["code"] == "not_found"
    assert api_invalid.status_code == 422 and "detail" in api_invalid.json()  # FastAPI's own
    assert page.status_code == 404 and heading(page) == "Not found"
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    assert page_invalid.status_code == 400 and "&#39;n&#39;" in page_invalid.text
    assert RequestValidationError in app.exception_handlers


def test_the_model_server_keeps_json_for_its_api_and_pages_for_the_dashboard(
    ws: modelyard.Workspace,
) -> None:
    app = create_app(
        ws.registry,
        ["churn@production"],
        poll_interval_s=0,
        extend=[lambda a: mount_on_server(a, ws=ws), install_error_pages],
    )

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                return [
                    await c.post("/v1/models/churn/predict", json=[{"a": "not a number"}]),
                    await c.get("/ui/monitoring/nope"),
                    await c.get("/ui/jobs/runs/x/log?offset=-1"),
                ]

    api, page, invalid = anyio.run(go)
    assert api.status_code == 422 and api.json()["code"] == "validation_failed"
    assert page.status_code == 404 and heading(page) == "Not found"
    assert invalid.status_code == 400 and "offset" in invalid.text


def test_the_model_page_says_what_an_action_left_from_a_code(ws: modelyard.Workspace) -> None:
    moved, rolled, unknown, text, other = pages(
        ws,
        "/ui/models/churn?done=alias&alias=production",
        "/ui/models/churn?done=rollback&alias=production",
        "/ui/models/churn?done=alias&alias=nope",
        f"/ui/models/churn?done={HOSTILE} your account is locked, call 555",
        "/ui/models/churn?done=whatever",
    )
    notice = r'<p class="notice" role="status">(.*?)</p>'
    assert re.findall(notice, moved.text) == ["churn@production now points at version 2"]
    assert re.findall(notice, rolled.text) == ["churn@production now points at version 2"]
    for page in (unknown, text, other):
        assert page.status_code == 200 and not re.findall(notice, page.text)
    assert "account is locked" not in text.text
    (stopped,) = pages(ws, "/ui/models/churn?done=stop-canary")
    assert "the canary of churn is stopped; all traffic goes to the champion" in stopped.text
    ws.registry.set_alias("churn", "candidate", 1)
    set_traffic(ws.registry, "churn", "candidate", 10)
    try:
        (running,) = pages(ws, "/ui/models/churn?done=stop-canary")
    finally:
        set_traffic(ws.registry, "churn", "candidate", 0)
        ws.registry.delete_alias("churn", "candidate")
    assert "the canary of churn is stopped" not in running.text  # one runs: not true now


def test_pages_link_runs_models_and_monitoring(ws: modelyard.Workspace) -> None:
    runs = {r.name: r.run_id for r in ws.runs.search(None)}
    trained, unregistered, model, monitoring, quality = pages(
        ws,
        f"/ui/runs/{runs['trained']}",
        f"/ui/runs/{runs['unregistered']}",
        "/ui/models/churn",
        "/ui/monitoring/churn",
        "/ui/monitoring/churn/quality",
    )
    registered = trained.text.split('id="registered"')[1].split("</ul>")[0]
    assert re.findall(r'href="([^"]+)"', registered) == [
        "/ui/models/churn#version-1",
        "/ui/models/churn#version-2",
    ]
    assert "production" in registered
    assert "no model version was registered from this run" in unregistered.text
    assert 'href="/ui/monitoring/churn"' in model.text
    for page in (monitoring, quality):
        assert 'href="/ui/models/churn"' in page.text


def test_the_report_links_back_to_the_dashboard_only_when_served(
    ws: modelyard.Workspace,
) -> None:
    from modelyard.monitoring import build_report, render_report

    (page,) = pages(ws, "/ui/monitoring/churn/report?window=1d")
    assert page.status_code == 200, page.text
    assert '<a href="/ui/monitoring/churn?alias=production">← dashboard</a>' in page.text
    assert '<link rel="icon" href="data:,">' in page.text
    offline = render_report(
        {**build_report(ws.registry, "churn@production", ws.predictions, timedelta(days=1)),
         "window": "1d"}
    )  # fmt: skip
    assert "← dashboard" not in offline and "<link" not in offline  # a file stands alone
