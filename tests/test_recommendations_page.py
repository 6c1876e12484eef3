"""The dashboard's recommendations page (``/ui/recommendations``) over a real workspace.

The blueprint's quickstart runs once, in process, on a new workspace with two nights
(both published); then the bias thresholds are tightened in modelyard.toml and one more
night runs, which the checks block (coverage under 0.5, two genres above twice their
catalogue share). The page is rendered in process (httpx's ASGI transport) and in
Debian's chromium against ``modelyard ui``: the verdicts, the live and kept nights, the
checks against their thresholds, the charts, a chosen night's genres, the holdout, and
the empty workspace's line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

import modelyard
from modelyard.blueprints import write_template
from ui_support import get

pytest.importorskip("implicit", reason="the recommendations blueprint's extra is not installed")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Nights:
    ws: modelyard.Workspace
    published: list[str]  # oldest first; the last is live
    blocked: str
    blocked_run: str


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nights]:
    from modelyard.blueprints.recommendations import quickstart, settings_of
    from modelyard.blueprints.recommendations._nightly import BlockedError, run_night

    folder = tmp_path_factory.mktemp("rec") / "recs"
    write_template("recommendations", folder)
    config = folder / "modelyard.toml"
    text = config.read_text()
    config.write_text(
        text.replace(
            'name = "recommendations"', 'name = "recommendations"\nnights = 2\nfail_night = 0'
        )
    )
    with modelyard.Workspace(folder) as ws:
        quickstart(ws)
    text = config.read_text()
    text = text.replace("min_coverage = 0.05", "min_coverage = 0.5")
    text = text.replace("max_exposure_ratio = 10.0", "max_exposure_ratio = 2.0")
    config.write_text(text)
    with modelyard.Workspace(folder) as ws:
        settings = settings_of(ws)
        assert settings.anchor is not None
        published = [
            f"{settings.anchor - timedelta(days=1):%Y-%m-%d}",
            f"{settings.anchor:%Y-%m-%d}",
        ]
        end = settings.anchor + timedelta(days=1, hours=2)
        with pytest.raises(BlockedError):
            run_night(ws, settings, end)
        blocked = f"{end:%Y-%m-%d}"
        (run,) = ws.runs.search(f"tags.`recommendations.night` = '{blocked}'")
        yield Nights(ws, published, blocked, run.run_id)


def _rows(html: str) -> dict[str, tuple[str, str]]:
    """night -> (verdict, the row's classes), from the nights table."""
    found = re.findall(r'<tr class="night([^"]*)" data-night="([^"]+)" data-verdict="(\w+)"', html)
    return {night: (verdict, classes) for classes, night, verdict in found}


def test_the_nights_show_their_verdicts_and_the_live_and_kept_nights(nights: Nights) -> None:
    (page,) = get(nights.ws, "/ui/recommendations")
    assert page.status_code == 200
    html = page.text
    rows = _rows(html)
    assert list(rows) == [nights.blocked, *reversed(nights.published)]  # newest first
    assert rows[nights.blocked][0] == "blocked" and "live" not in rows[nights.blocked][1]
    older, live = nights.published
    assert rows[live] == ("published", " here live selected")
    assert rows[older][0] == "published" and "live" not in rows[older][1]
    assert '<span class="verdict verdict-blocked">blocked</span>' in html
    assert f'Readers see night <strong class="live-night">{live}</strong>' in html
    assert f'Kept for rollback: night <strong class="kept-night">{older}</strong>' in html
    # Each check against its threshold: the blocked night's coverage failed, in red.
    # The breach as it stands ("<" escaped in the HTML).
    assert re.search(r'<td class="num fail"[^>]*>0\.\d+ &lt; 0\.5</td>', html)
    assert re.search(r'<td class="num pass"[^>]*>[\d.]+ ≤ 1\.65</td>', html)
    # The bias checks over the nights, thresholds drawn; the holdout's two models.
    charts = html.split('class="charts bias-charts"')[1].split("</div>")[0]
    assert charts.count("<svg") == 3 and "max 1.65" in charts
    assert "min (per night)" in charts  # coverage's threshold changed
    holdout = html.split('id="holdout-recommender"')[1]
    assert "ALS against the popularity baseline" in holdout and "precision@10" in holdout
    assert '<a href="/ui/recommendations" class="here">Recommendations</a>' in html


def test_the_genres_of_the_live_night_and_of_a_chosen_night(nights: Nights) -> None:
    live, chosen, unknown = get(
        nights.ws,
        "/ui/recommendations",
        f"/ui/recommendations?night={nights.blocked}",
        "/ui/recommendations?night=1999-01-01",
    )
    section = live.text.split('<section class="genres"')[1]
    assert f'data-night="{nights.published[-1]}"' in section.split(">")[0]
    assert "exposure per genre" in section and 'class="breach"' not in section
    assert "Drama" in section and "catalogue share" in section
    picked = chosen.text.split('<section class="genres"')[1]
    assert f'data-run="{nights.blocked_run}"' in picked.split(">")[0]
    # Checked genres above twice their catalogue share: red bars, marked rows.
    assert picked.count('class="breach"') >= 1
    assert picked.count('<tr class="group breach"') == picked.count('class="breach"')
    assert unknown.status_code == 200 and "no night 1999-01-01 of recommender" in unknown.text


def test_an_empty_workspace_says_how_to_run_the_nightly_job(tmp_path: Path) -> None:
    with modelyard.Workspace.init(tmp_path) as ws:
        (page,) = get(ws, "/ui/recommendations")
    assert page.status_code == 200
    assert 'id="no-nights"' in page.text
    assert "modelyard jobs run recommendations-nightly" in page.text
    assert "<svg" not in page.text


def test_the_page_in_a_browser(nights: Nights) -> None:
    from browser_support import Watched, browser, chromium_path, dashboard

    chromium_path()  # skips here without chromium (fails under CI=true)
    with dashboard(nights.ws.root, "/ui/recommendations") as url:
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            watched = Watched()
            watched.attach(page)
            page.goto(f"{url}/ui/recommendations")
            live = page.locator("tr.night.live")
            assert live.count() == 1 and live.get_attribute("data-night") == nights.published[-1]
            assert live.locator(".badge.live").is_visible()
            blocked = page.locator(f'tr.night[data-night="{nights.blocked}"]')
            badge = blocked.locator(".verdict")
            assert badge.inner_text() == "blocked" and badge.is_visible()
            # The verdicts are told apart by colour, not only by their word.
            colour = badge.evaluate("e => getComputedStyle(e).backgroundColor")
            ok = live.locator(".verdict").evaluate("e => getComputedStyle(e).backgroundColor")
            assert colour != ok
            assert page.locator(".bias-charts svg.chart").count() == 3
            genres = page.locator("section.genres svg.chart")
            assert genres.is_visible() and genres.locator("rect.breach").count() == 0
            blocked.locator("td a").first.click()
            page.wait_for_load_state("networkidle")
            section = page.locator("section.genres")
            assert section.get_attribute("data-night") == nights.blocked
            assert section.locator("svg.chart rect.breach").count() >= 1
            assert section.locator("tr.group.breach").first.is_visible()
            assert watched.console_errors == [] and watched.failed == []
