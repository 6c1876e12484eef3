"""The dashboard on the model server (``modelyard serve`` mounts it at /ui): signing in
with a key, what each role sees and may do, the admin actions (confirmation, CSRF,
audit, the same functions as the command line) and the live Serving page.
In a real browser: tests/test_ui_browser.py."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

import modelyard
from modelyard.registry import set_traffic
from modelyard.release import release_history
from modelyard.security import COOKIE, Sessions, audit_events, create_key, revoke_key
from modelyard.serving import create_app
from modelyard.ui import create_ui_app, mount_on_server
from modelyard.ui._traffic import LiveTraffic, quantile, read_totals
from registry_support import serving_workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    root = serving_workspace(tmp_path_factory.mktemp("uiserve") / "ws", ["churn"], 3)
    ws = modelyard.Workspace(root, environ={})
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture(scope="module")
def keys(ws: modelyard.Workspace) -> dict[str, str]:
    return {
        role: create_key(ws.metadata, role, name=f"{role}-person")[1]
        for role in ("admin", "reader", "predictor")
    }


@asynccontextmanager
async def server(
    ws: modelyard.Workspace, auth: bool = True, base_url: str = "http://localhost"
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ws.registry,
        ["churn@production"],
        prediction_log=ws.predictions,
        auth=auth,
        poll_interval_s=0,
        extend=[functools.partial(mount_on_server, ws=ws)],
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            yield c


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/ui/sign-in",
        content=f"key={key}&next=/ui/models/churn",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def current_of(page: str) -> str:
    found = re.search(r'name="current" value="(\d*)"', page)
    assert found, "the confirmation has no current version"
    return found.group(1)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF token"
    return found.group(1)


async def test_a_page_without_a_session_sends_the_person_to_sign_in(
    ws: modelyard.Workspace,
) -> None:
    async with server(ws) as client:
        page = await client.get("/ui/models?x=1")
        root = await client.get("/")
        api = await client.get("/v1/models")
        form = await client.get(page.headers["location"])
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in?next=%2Fui%2Fmodels%3Fx%3D1"
    assert root.status_code == 307 and root.headers["location"] == "/ui/runs"
    assert api.status_code == 401 and api.json()["code"] == "unauthenticated"  # the API: JSON
    assert form.status_code == 200 and 'type="password"' in form.text


async def test_signing_in_sets_a_session_cookie_that_names_the_key(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    async with server(ws) as client:
        wrong = await sign_in(client, "myd_000000000000_nope")
        predictor = await sign_in(client, keys["predictor"])
        answer = await sign_in(client, keys["reader"])
        page = await client.get("/ui/models/churn")
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    assert predictor.status_code == 403 and "reader or admin key" in predictor.text
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/models/churn"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert keys["reader"][17:] not in cookie  # the secret never goes to the browser
    assert page.status_code == 200 and "reader-person" in page.text
    assert "no API keys" not in page.text


async def test_a_forged_or_revoked_session_is_refused(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    made, token = create_key(ws.metadata, "reader", name="leaver")
    async with server(ws) as client:
        await sign_in(client, token)
        assert (await client.get("/ui/runs")).status_code == 200
        session = client.cookies[COOKIE]
        forged = session[:-1] + ("0" if session[-1] != "0" else "1")
        client.cookies.clear()
        client.cookies.set(COOKIE, forged)
        assert (await client.get("/ui/runs")).status_code == 303
    revoke_key(ws.metadata, made.key_id)
    async with server(ws) as client:  # a server reads the keys at start and every poll
        client.cookies.set(COOKIE, session)
        assert (await client.get("/ui/runs")).status_code == 303


async def test_a_reader_sees_but_may_not_act(ws: modelyard.Workspace, keys: dict[str, str]) -> None:
    async with server(ws) as client:
        await sign_in(client, keys["reader"])
        model = await client.get("/ui/models/churn")
        confirm = await client.get("/ui/models/churn/confirm?action=alias&version=1")
        acted = await client.post(
            "/ui/actions/rollback",
            content="model=churn&alias=production&csrf=whatever",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert confirm.status_code == 200 and "Only an admin key" in confirm.text
    assert 'id="actions"' not in model.text  # a reader is offered nothing to do
    assert acted.status_code == 403 and "needs role admin" in acted.text  # a page, not JSON
    assert acted.headers["content-type"].startswith("text/html")
    assert ws.registry.get("churn@production").version == 3


async def test_an_admin_rolls_back_and_moves_an_alias_with_confirmation_and_audit(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with server(ws) as client:
        await sign_in(client, keys["admin"])
        confirm = await client.get("/ui/models/churn/confirm?action=alias&version=1")
        assert "from version 3 to version 1" in confirm.text
        token = csrf_of(confirm.text)
        no_token = await client.post(
            "/ui/actions/alias", content="model=churn&alias=production&version=1", headers=form
        )
        moved = await client.post(
            "/ui/actions/alias",
            content=f"model=churn&alias=production&version=1&current={current_of(confirm.text)}"
            f"&csrf={token}",
            headers=form,
        )
        assert moved.status_code == 303, moved.text
        assert ws.registry.get("churn@production").version == 1
        shown = await client.get(moved.headers["location"])
        assert "churn@production now points at version 1" in shown.text
        assert 'id="actions"' in shown.text
        assert "Roll back @production to version 3" in shown.text
        confirm = await client.get("/ui/models/churn/confirm?action=rollback")
        assert "back from version 1 to version 3" in confirm.text
        back = await client.post(
            "/ui/actions/rollback",
            content=f"model=churn&alias=production&csrf={csrf_of(confirm.text)}",
            headers=form,
        )
        cross_site = await client.post(
            "/ui/actions/rollback",
            content=f"model=churn&alias=production&csrf={token}",
            headers={**form, "origin": "http://evil.example"},
        )
        unknown = await client.get("/ui/models/nope/confirm?action=alias&version=1")
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    assert back.status_code == 303 and ws.registry.get("churn@production").version == 3
    assert cross_site.status_code == 403 and "cross-site" in cross_site.text
    assert unknown.status_code == 404
    record = release_history(ws.metadata, "churn", limit=1)[0]
    assert record.action == "rollback" and record.actor == "admin-person (dashboard)"
    events = [e for e in audit_events(ws.metadata) if e.target.startswith("churn")]
    assert [e.actor for e in events[:2]] == ["admin-person"] * 2  # the signed-in key


async def test_an_admin_stops_a_canary_from_the_serving_page(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    ws.registry.set_alias("churn", "candidate", 2)
    set_traffic(ws.registry, "churn", "candidate", 10)
    async with server(ws) as client:
        await sign_in(client, keys["admin"])
        page = await client.get("/ui/serving/panel")
        confirm = await client.get("/ui/models/churn/confirm?action=stop-canary")
        stopped = await client.post(
            "/ui/actions/stop-canary",
            content=f"model=churn&csrf={csrf_of(confirm.text)}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        shown = await client.get(stopped.headers["location"])
        again = await client.get("/ui/models/churn/confirm?action=stop-canary")
        model = await client.get("/ui/models/churn")
        never_moved = await client.get("/ui/models/churn/confirm?action=rollback&alias=candidate")
    assert "10% of &#39;churn&#39; to @candidate" in page.text or "No requests yet" in page.text
    assert stopped.status_code == 303 and "done=stop-canary" in stopped.headers["location"]
    assert "the canary of churn is stopped" in shown.text
    assert again.status_code == 400 and "no canary" in again.text
    assert "Roll back @candidate" not in model.text  # set once: nothing to roll back to
    assert never_moved.status_code == 409 and "no earlier version" in never_moved.text
    assert release_history(ws.metadata, "churn", limit=1)[0].action == "canary-aborted"


async def test_the_serving_page_shows_live_rates_and_latency(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    async with server(ws) as client:
        await sign_in(client, keys["reader"])
        first = await client.get("/ui/serving")
        auth = {"Authorization": f"Bearer {keys['admin']}"}
        for _ in range(20):
            r = await client.post("/v1/models/churn/predict", json={"a": 1.0}, headers=auth)
            assert r.status_code == 200
        bad = await client.post("/v1/models/churn/predict", json={"b": 1}, headers=auth)
        assert bad.status_code == 422
        panel = await client.get("/ui/serving/panel")
    assert 'data-refresh="/ui/serving/panel"' in first.text
    assert "/ui/static/refresh.js" in first.text
    rows = {
        variant: re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        for variant, cells in re.findall(
            r'<tr data-model="churn" data-variant="([^"]*)">(.*?)</tr>', panel.text, re.S
        )
    }
    assert len(rows) == 2, rows
    served = next(cells for variant, cells in rows.items() if variant)
    refused = rows[""]  # "": refused before routing (bad input)
    assert int(served[3]) == 20 and int(refused[3]) == 1  # every request since start
    assert served[5].strip() == "100%" and refused[5].strip() == ""  # the variants' split
    assert served[8].strip() == "0.0%" and refused[9].strip() == "100.0%"
    assert float(served[6]) > 0 and float(served[7]) >= float(served[6])  # p50 <= p99, ms
    assert "(not routed)" in refused[1]


def test_quantiles_come_from_histogram_buckets_as_prometheus_computes_them() -> None:
    series = 'modelyard_request_latency_seconds_bucket{model="m",variant="c",le="%s"} %d'
    counts = (("0.001", 0), ("0.002", 50), ("0.004", 90), ("0.008", 100), ("+Inf", 100))
    lines = [series % pair for pair in counts]
    text = "\n".join(["# TYPE modelyard_request_latency_seconds histogram", *lines, ""])
    buckets = read_totals(text, 0.0).buckets[("m", "c")]
    assert quantile(0.5, buckets) == pytest.approx(0.002)
    assert quantile(0.9, buckets) == pytest.approx(0.004)
    assert quantile(0.99, buckets) == pytest.approx(0.004 + 0.004 * 0.9)
    assert quantile(0.5, {}) is None


def test_sessions_expire_and_cannot_be_moved_to_another_key() -> None:
    sessions = Sessions(b"k" * 32, ttl_s=60)
    token = sessions.issue("abc123", now=1000.0)
    assert sessions.key_id(token, now=1059.0) == ("abc123", 1_000_000_000)
    with pytest.raises(modelyard.errors.UnauthenticatedError, match="expired"):
        sessions.key_id(token, now=1061.0)
    moved = token.replace("abc123", "def456")
    with pytest.raises(modelyard.errors.UnauthenticatedError, match="not valid"):
        sessions.key_id(moved, now=1001.0)
    assert Sessions(b"x" * 32).csrf(token) != sessions.csrf(token)


async def test_a_loopback_server_without_keys_lets_its_user_act(ws: modelyard.Workspace) -> None:
    async with server(ws, auth=False, base_url="http://127.0.0.1:8000") as client:
        page = await client.get("/ui/models/churn/confirm?action=alias&version=3")
        sign_in_page = await client.get("/ui/sign-in")
        rebound = await client.get("/ui/runs", headers={"host": "attacker.example:8000"})
    assert page.status_code == 200 and 'name="csrf"' in page.text
    assert "This server has no API keys" in page.text  # said on every page it serves
    assert "nothing to sign in to" in sign_in_page.text
    assert rebound.status_code == 403  # DNS rebinding: the page is not served


async def test_modelyard_ui_alone_reads_traffic_from_the_prediction_log(
    tmp_path: Path,
) -> None:
    ws = modelyard.Workspace(serving_workspace(tmp_path / "ws", ["churn"], 1), environ={})
    try:
        async with server(ws, auth=False, base_url="http://127.0.0.1:8000") as client:
            for _ in range(5):
                r = await client.post("/v1/models/churn/predict", json=[{"a": 1.0}, {"a": 2.0}])
                assert r.status_code == 200
            assert (await client.post("/v1/models/churn/predict", json={"a": "x"})).is_error
        ws.predictions.close()  # what a stopped server leaves: its log on disk
        transport = httpx.ASGITransport(app=create_ui_app(ws))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ui:
            page = await ui.get("/ui/serving")
    finally:
        ws.close()
    assert "from the prediction log" in page.text
    row = page.text.split('<tr data-model="churn" data-variant="production">')[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.split("</tr>")[0], re.S)
    assert int(cells[3]) == 6  # requests, not rows (five had two rows), the refused one too
    assert cells[9].strip() == "16.7%"  # refused: 1 of 6


def test_live_rates_slide_over_the_window_whoever_looks() -> None:
    clock = [0.0]
    count = [0]

    def metrics() -> bytes:
        series = 'modelyard_requests_total{model="m",version="1",variant="v",code="200"} %d\n'
        return (series % count[0]).encode()

    live = LiveTraffic(metrics, clock=lambda: clock[0])
    seen = []
    for at, total in ((0, 0), (10, 100), (20, 100), (25, 100), (40, 100), (55, 100)):
        clock[0], count[0] = float(at), total
        for _ in range(5):  # five people looking at once: one read kept
            (row,) = live.rows()
        seen.append((row.total, row.rate, live.window_s))
    assert seen[0] == (0, None, None)  # the first read: no window yet
    assert seen[1] == (100, 10.0, 10.0) and seen[2] == (100, 5.0, 20.0)
    rates = [rate for _, rate, _ in seen[1:]]
    assert rates == sorted(rates, reverse=True)  # no traffic: the rate only falls
    assert seen[4][2] == 30.0 and seen[4][1] == pytest.approx(0.0)  # baseline t=10
    assert all(total == 100 for total, _, _ in seen[1:])  # since start, whatever the window


async def test_bad_form_values_are_one_line_refusals_not_crashes(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with server(ws) as client:
        crowded = await client.post(
            "/ui/sign-in", content="&".join(f"f{i}=1" for i in range(12)), headers=form
        )
        await sign_in(client, keys["admin"])
        pages = [
            await client.get(f"/ui/models/churn/confirm?action=alias&version={v}")
            for v in ("99999999999999999999999", "%C2%B2", "abc")
        ]
        confirm = await client.get("/ui/models/churn/confirm?action=alias&version=2")
        token, current = csrf_of(confirm.text), current_of(confirm.text)
        ws.registry.set_alias("churn", "production", 1)  # someone else moves it meanwhile
        late = await client.post(
            "/ui/actions/alias",
            content=f"model=churn&alias=production&version=2&current={current}&csrf={token}",
            headers=form,
        )
        ws.registry.set_alias("churn", "production", 3)
    assert crowded.status_code == 400 and "more than 8 fields" in crowded.text
    assert [p.status_code for p in pages] == [400, 400, 400]
    assert all("not a version number" in p.text for p in pages)
    assert late.status_code == 409 and "moved" in late.text.lower()


async def test_signing_out_ends_the_session_even_for_a_copied_cookie(
    ws: modelyard.Workspace, keys: dict[str, str]
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with server(ws) as client:
        await sign_in(client, keys["admin"])
        copied = client.cookies[COOKIE]
        page = await client.get("/ui/runs")
        out = await client.post("/ui/sign-out", content=f"csrf={csrf_of(page.text)}", headers=form)
        assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
        client.cookies.clear()
        client.cookies.set(COOKIE, copied)
        assert (await client.get("/ui/runs")).status_code == 303  # this server, at once
    async with server(ws) as replica:  # another server reads the sign-out with the keys
        replica.cookies.set(COOKIE, copied)
        assert (await replica.get("/ui/runs")).status_code == 303
        replica.cookies.clear()
        await sign_in(replica, keys["admin"])
        assert (await replica.get("/ui/runs")).status_code == 200  # a new session works
    actions = [e.action for e in audit_events(ws.metadata, action="ui.")][:3]
    assert actions == ["ui.sign-in", "ui.sign-out", "ui.sign-in"]
