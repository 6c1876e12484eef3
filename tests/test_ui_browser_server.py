"""The dashboard on a real ``modelyard serve --require-auth``, in a real browser (Debian's
chromium via Playwright), as a person uses it: signing in and out with a key, an admin
moving an alias through the confirmation page (and the audit naming the key), the
Serving page counting live predictions without a reload, and a running job's log
growing on its page until the run ends. Every page loads with no console errors and
no failed requests, except the 4xx answers that are the point of a step.
In process: tests/test_ui_server.py; the read-only ``modelyard ui``: tests/test_ui_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelyard
from browser_support import Watched, browser
from modelyard.security import audit_events, create_key
from registry_support import serving_workspace
from server_support import ServerProcess, running_server

pytestmark = pytest.mark.slow

NAMES = {"admin": "ada-admin", "reader": "rita-reader", "predictor": "pat-predictor"}


@dataclass
class Site:
    server: ServerProcess
    root: Path
    keys: dict[str, str]  # role -> the key's secret, as a person would paste it

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``churn`` (three versions, @production on 3) for the actions, ``echo`` for traffic."""
    root = serving_workspace(tmp_path_factory.mktemp("ui-serve") / "ws", ["churn", "echo"], 3)
    with modelyard.Workspace(root, environ={}) as ws:
        keys = {role: create_key(ws.metadata, role, name=name)[1] for role, name in NAMES.items()}
    refs = ["churn@production", "echo@production"]
    with running_server(root, refs, "--require-auth", "--host", "127.0.0.1") as server:
        yield Site(server, root, keys)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture
def page(chromium: Any, site: Site) -> Iterator[tuple[Any, Watched]]:
    """A fresh browser context (no cookies) on the site, watched for errors."""
    context = chromium.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    watched = Watched()
    watched.attach(tab)
    try:
        yield tab, watched
    finally:
        context.close()


def sign_in(tab: Any, site: Site, role: str, path: str = "/ui/models") -> None:
    tab.goto(path)
    tab.fill("#key", site.keys[role])
    tab.click("form.signin button[type=submit]")
    tab.wait_for_load_state("networkidle")


def expect_refused(watched: Watched, status: int, site: Site) -> None:
    """The sign-in form answered ``status`` (the point of the step), and nothing else
    failed; forget it, so that what follows is checked clean."""
    assert watched.failed == [f"{status} {site.url}/ui/sign-in"]
    (console,) = watched.console_errors  # chromium reports a 4xx document on the console
    assert f"status of {status}" in console
    watched.failed.clear()
    watched.console_errors.clear()


def clean(watched: Watched) -> None:
    assert watched.console_errors == [] and watched.failed == []


def test_signing_in_and_out_with_a_key(page: tuple[Any, Watched], site: Site) -> None:
    tab, watched = page
    tab.goto("/ui/models")
    assert tab.url == f"{site.url}/ui/sign-in?next=%2Fui%2Fmodels"  # no session: the form
    assert tab.locator("#key").get_attribute("type") == "password"
    tab.fill("#key", "myd_000000000000_not-a-key")
    tab.click("form.signin button[type=submit]")
    assert tab.locator("p.error[role=alert]").is_visible()
    expect_refused(watched, 401, site)  # the wrong key, and only that
    tab.fill("#key", site.keys["predictor"])
    tab.click("form.signin button[type=submit]")
    refusal = tab.locator("p.error[role=alert]").inner_text()
    assert "pat-predictor" in refusal and "reader or admin key" in refusal
    expect_refused(watched, 403, site)
    tab.fill("#key", site.keys["reader"])
    tab.click("form.signin button[type=submit]")
    tab.wait_for_load_state("networkidle")
    assert tab.url == f"{site.url}/ui/models"  # the page asked for, not a default
    assert tab.locator("table").first.inner_text().count("churn") >= 1
    viewer = tab.locator("header .viewer")
    assert "rita-reader" in viewer.inner_text() and "(reader)" in viewer.inner_text()
    viewer.get_by_role("button", name="Sign out").click()
    tab.wait_for_load_state("networkidle")
    assert tab.url.startswith(f"{site.url}/ui/sign-in")
    tab.goto("/ui/runs")  # the cookie is gone: back to the form
    assert tab.url.startswith(f"{site.url}/ui/sign-in?next=")
    clean(watched)


def test_a_reader_may_not_act_and_an_admin_moves_an_alias(
    chromium: Any, page: tuple[Any, Watched], site: Site
) -> None:
    tab, watched = page
    sign_in(tab, site, "reader", "/ui/models/churn")
    assert tab.locator("#versions tbody tr").count() == 3
    assert tab.locator("#actions").count() == 0  # a reader is offered nothing to do
    clean(watched)

    admin = chromium.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    try:
        tab = admin.new_page()
        watched = Watched()
        watched.attach(tab)
        sign_in(tab, site, "admin", "/ui/models/churn")
        assert "ada-admin (admin)" in tab.locator("header .viewer").inner_text()
        actions = tab.locator("#actions")
        actions.locator("select[name=version]").select_option("1")
        actions.get_by_role("button", name="Move…").click()
        tab.wait_for_load_state("networkidle")
        what = tab.locator(".confirm strong").inner_text()
        assert what == "move churn@production from version 3 to version 1"
        tab.get_by_role("button", name="Yes, move it").click()
        tab.wait_for_load_state("networkidle")
        assert tab.url.startswith(f"{site.url}/ui/models/churn?done=")
        notice = tab.locator("p.notice[role=status]").inner_text()
        assert notice == "churn@production now points at version 1"
        aliases = {
            row.locator("td").nth(0).inner_text(): row.locator("td").nth(1).inner_text()
            for row in tab.locator("#versions tbody tr").all()
        }
        assert aliases == {"3": "", "2": "", "1": "production"}
        clean(watched)
    finally:
        admin.close()
    with modelyard.Workspace(site.root, environ={}) as ws:
        assert ws.registry.get("churn@production").version == 1
        events = [e for e in audit_events(ws.metadata) if e.target.startswith("churn")]
    assert events and events[0].actor == "ada-admin"  # the signed-in key, by name


def test_the_serving_page_counts_live_predictions_without_a_reload(
    page: tuple[Any, Watched], site: Site
) -> None:
    tab, watched = page
    sign_in(tab, site, "reader", "/ui/serving")
    assert tab.url == f"{site.url}/ui/serving"
    tab.evaluate("window.__marker = 1")
    sent = 7
    auth = {"Authorization": f"Bearer {site.keys['predictor']}"}
    with httpx.Client(base_url=site.url, headers=auth, timeout=10) as client:
        for i in range(sent):
            answer = client.post("/v1/models/echo/predict", json={"a": float(i)})
            assert answer.status_code == 200, answer.text
    cell = """n => {
        const row = document.querySelector('#serving tr[data-model="echo"]:not([data-variant=""])');
        return row !== null && row.cells[3].textContent.trim() === String(n);
    }"""
    tab.wait_for_function(cell, arg=sent, timeout=8000)
    assert tab.evaluate("window.__marker") == 1  # the same document: no reload
    row = tab.locator('#serving tr[data-model="echo"]:not([data-variant=""])')
    cells = row.locator("td").all_inner_texts()
    assert float(cells[6]) > 0 and float(cells[7]) >= float(cells[6])  # p50 <= p99, ms
    assert tab.locator("#serving").get_attribute("data-stale") == "false"
    clean(watched)


def test_a_running_jobs_log_grows_on_its_page_until_it_ends(
    page: tuple[Any, Watched], site: Site
) -> None:
    from modelyard.jobs import JobHistory
    from modelyard.jobs._logs import log_dir

    tab, watched = page
    run_id = "b" * 32
    with modelyard.Workspace(site.root, environ={}) as ws:
        history = JobHistory(ws.metadata)
        history.start_run(run_id, "nightly", datetime(2026, 3, 1, tzinfo=UTC), "manual", "test")
        log = log_dir(ws) / f"{run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("step 1: loading\n")
        sign_in(tab, site, "reader", f"/ui/jobs/runs/{run_id}")
        assert tab.locator("#run-status").inner_text() == "running"
        assert tab.locator("#log").text_content() == "step 1: loading\n"
        tab.evaluate("window.__marker = 1")
        with log.open("a") as f:
            f.write("step 2: training\nstep 3: sav")  # the last line is not whole yet
        tab.wait_for_function(
            "() => document.getElementById('log').textContent.includes('step 2: training')",
            timeout=8000,
        )
        assert "step 3" not in tab.locator("#log").text_content()  # no half-written line
        with log.open("a") as f:
            f.write("ing\ndone\n")
        history.end_run(run_id, "success", None, log.read_text())
        tab.wait_for_function(
            "() => document.getElementById('run-status').textContent === 'success'",
            timeout=8000,
        )
    shown = tab.locator("#log").text_content()
    assert shown == "step 1: loading\nstep 2: training\nstep 3: saving\ndone\n"
    assert tab.locator("#log-following").inner_text() == "The run ended: success."
    assert tab.locator("#run-ended").inner_text().startswith(str(datetime.now(UTC).year))
    assert tab.evaluate("window.__marker") == 1
    clean(watched)
