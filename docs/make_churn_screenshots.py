"""Regenerate the churn blueprint's screenshots in docs/ (its README shows them).

Runs the blueprint's default quickstart through the command line in a temporary folder
(``modelyard init --blueprint churn`` then ``modelyard quickstart --blueprint churn
--no-serve``: 181 days of history, the first model, 28 replayed days with a drift from
day 112), creates an admin key for an hour (``modelyard keys create``), starts
``modelyard serve churn@production --require-auth`` on the workspace, signs in with the
key in Debian's chromium (through Playwright) and photographs three pages:

    docs/churn-monitoring.png   /ui/monitoring/churn: alerts, drift per column, drift share
    docs/churn-cost-curve.png   /ui/runs/RUN of the production version: the cost curve
    docs/churn-jobs.png         /ui/jobs: the four jobs and their recent runs

Each is 1280 px wide, cut below the part worth seeing. The quickstart's wall time and
summary are printed.

    .venv/bin/python docs/make_churn_screenshots.py
    .venv/bin/python docs/make_churn_screenshots.py --workspace DIR   # keep it in DIR

With ``--workspace``, a folder that already holds a churn workspace released to
production is photographed as it is (no new quickstart).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import FloatRect, Page, sync_playwright

HERE = Path(__file__).resolve().parent
WIDTH = 1280
TALLEST = 1800  # px: a longer page is cut there
MODEL = "churn"
CLI = [sys.executable, "-c", "from modelyard.cli import main; main()"]
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}


def cli(*args: str, cwd: Path, capture: bool = False) -> str:
    """Run ``modelyard ARGS`` in ``cwd``; its output (when ``capture``) or ''."""
    done = subprocess.run(
        [*CLI, *args], cwd=cwd, env=CLEAN, check=True, text=True, capture_output=capture
    )
    return done.stdout if capture else ""


def quickstart(root: Path) -> float:
    """The blueprint's default quickstart in ``root``; returns its wall time in seconds."""
    root.parent.mkdir(parents=True, exist_ok=True)
    cli("init", "--blueprint", MODEL, str(root), cwd=root.parent)
    began = time.monotonic()
    cli("quickstart", "--blueprint", MODEL, "--no-serve", cwd=root)
    return time.monotonic() - began


def released(root: Path) -> bool:
    """Whether ``root`` holds a churn workspace with a version in production."""
    if not (root / "modelyard.toml").is_file():
        return False
    done = subprocess.run(
        [*CLI, "models", "show", f"{MODEL}@production", "-w", str(root)],
        env=CLEAN,
        capture_output=True,
    )
    return done.returncode == 0


def production_run(root: Path) -> str:
    """The training run of the version at churn@production."""
    import modelyard

    with modelyard.Workspace(root) as ws:
        run_id = ws.registry.get(f"{MODEL}@production").run_id
    assert run_id, "churn@production has no training run"
    return run_id


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """``modelyard serve churn@production --require-auth`` on a free port (the dashboard
    screenshots' server, make_screenshots.serving); its URL."""
    sys.path.insert(0, str(HERE))
    from make_screenshots import serving as serve_model

    with serve_model(root, MODEL) as url:
        yield url


def bottom_of(page: Page, selector: str) -> float:
    """The page y (px) of the bottom edge of the last element that ``selector`` matches."""
    found = page.locator(selector)
    box = found.nth(found.count() - 1).bounding_box()
    assert box is not None, f"{selector} is not on {page.url}"
    scrolled = float(page.evaluate("window.scrollY"))
    return box["y"] + box["height"] + scrolled


def save(page: Page, name: str, below: str | None = None, prefix: str = MODEL) -> None:
    """The page as docs/PREFIX-NAME.png: down to the element ``below`` names (plus a
    margin), or the whole page, cut at ``TALLEST`` px either way."""
    page.evaluate("window.scrollTo(0, 0)")
    height = float(page.evaluate("document.documentElement.scrollHeight"))
    if below is not None:
        height = min(height, bottom_of(page, below) + 16)
    clip = FloatRect(x=0, y=0, width=WIDTH, height=min(height, TALLEST))
    page.screenshot(path=str(HERE / f"{prefix}-{name}.png"), full_page=True, clip=clip)
    print(f"docs/{prefix}-{name}.png  {page.url}")


def shoot(page: Page, url: str, name: str, below: str | None = None) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    save(page, name, below)


def photograph(url: str, key: str, run_id: str) -> None:
    with sync_playwright() as p:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": WIDTH, "height": 800})
        page.goto(f"{url}/ui/sign-in?next=/ui/jobs")
        page.fill("#key", key)
        page.click("form.signin button[type=submit]")
        page.wait_for_load_state("networkidle")
        # The alerts, then the charts over time: drift per column and drift share.
        shoot(page, f"{url}/ui/monitoring/{MODEL}", "monitoring", below="div.charts")
        # The metrics table and the cost curve under it.
        shoot(page, f"{url}/ui/runs/{run_id}", "cost-curve", below="div.charts")
        # The four jobs, then the newest runs (cut at TALLEST).
        shoot(page, f"{url}/ui/jobs", "jobs")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="the churn blueprint's screenshots in docs/")
    parser.add_argument("--workspace", type=Path, help="where to run the quickstart (and keep it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workspace or Path(tmp) / "churn").resolve()
        if released(root):
            print(f"photographing the workspace in {root} as it is")
        else:
            seconds = quickstart(root)
            print(f"quickstart: {seconds:.0f} s wall time")
        run_id = production_run(root)
        create = ("keys", "create", "--role", "admin", "--name", "ada", "--expires", "1h")
        key = cli(*create, cwd=root, capture=True).strip().splitlines()[-1]
        try:
            with serving(root) as url:
                photograph(url, key, run_id)
        finally:  # a kept workspace can be photographed again: the name is free
            cli("keys", "revoke", key.split("_")[1], cwd=root)


if __name__ == "__main__":
    main()
