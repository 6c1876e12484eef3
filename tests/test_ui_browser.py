"""The dashboard as a person uses it, in a real browser (Debian's chromium via
Playwright): each page loads with no console errors and no failed requests, shows the
seeded runs and models, draws its charts, and the runs filter and the compare view work
by typing and clicking.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import modelyard
from browser_support import Watched, browser
from browser_support import dashboard as ui_server
from registry_support import doubler

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ui") / "ws"
    with modelyard.Workspace.init(root, environ={}) as ws:
        for i, c in enumerate((0.1, 1.0, 10.0)):
            with ws.start_run(f"lr-C{c}", params={"C": c, "penalty": "l2"}) as run:
                for step in range(10):
                    run.log_metric("loss", 1.0 / (step + 1 + i), step=step)
                run.log_metric("accuracy", 0.80 + 0.05 * i)
                logged = ws.registry.log_model(
                    run, doubler(), input_example=pd.DataFrame({"a": [1.0]})
                )
            version = ws.registry.register("churn", logged).version
            ws.registry.set_alias("churn", "production", version)
    with ui_server(root) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


def _open(chromium: Any, url: str) -> tuple[Any, Watched]:
    page = chromium.new_page()
    watched = Watched()
    watched.attach(page)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, watched


def test_the_runs_page_lists_runs_and_filters_them(chromium: Any, dashboard: str) -> None:
    page, watched = _open(chromium, f"{dashboard}/ui/runs")
    assert page.locator("#runs tbody tr").count() == 3
    page.fill("input[name=filter]", "metrics.accuracy > 0.82")
    page.click("form.filter button")
    page.wait_for_load_state("networkidle")
    names = page.locator("#runs tbody tr td:nth-child(2) a").all_inner_texts()
    assert sorted(names) == ["lr-C1.0", "lr-C10.0"]
    page.fill("input[name=filter]", "metrics.accuracy >>> 1")
    page.click("form.filter button")
    page.wait_for_load_state("networkidle")
    assert page.locator("[role=alert]").count() == 1  # the query's problem, over the form
    assert page.locator("input[name=filter]").input_value() == "metrics.accuracy >>> 1"
    assert watched.console_errors == [] and watched.failed == []


def test_two_runs_compare_side_by_side_with_charts(chromium: Any, dashboard: str) -> None:
    page, watched = _open(chromium, f"{dashboard}/ui/runs")
    boxes = page.locator("#runs tbody input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "Compare runs" in page.title()
    assert page.locator("#params th", has_text="C").count() >= 1
    assert page.locator("svg.chart").count() >= 2
    assert page.locator("svg.chart[aria-label=loss] polyline").count() == 2  # a line per run
    assert watched.console_errors == [] and watched.failed == []


def test_the_models_pages_show_versions_aliases_and_lineage(chromium: Any, dashboard: str) -> None:
    page, watched = _open(chromium, f"{dashboard}/ui/models")
    page.click("text=churn")
    page.wait_for_load_state("networkidle")
    assert page.locator("#versions tbody tr").count() == 3
    assert "production" in page.locator("#versions").inner_text()
    page.click("#versions tbody tr >> nth=0 >> a")  # the version's run
    page.wait_for_load_state("networkidle")
    assert page.locator("svg.chart").count() >= 1
    assert watched.console_errors == [] and watched.failed == []


def test_every_page_loads_cleanly_and_takes_a_screenshot(
    chromium: Any, dashboard: str, tmp_path: Path
) -> None:
    pages = ("/ui/runs", "/ui/models", "/ui/models/churn", "/ui/monitoring", "/ui/jobs")
    for path in (*pages, "/ui/features", "/ui/monitoring/churn"):
        page, watched = _open(chromium, f"{dashboard}{path}")
        shot = tmp_path / (path.strip("/").replace("/", "-") + ".png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5_000
        assert watched.console_errors == [] and watched.failed == []
