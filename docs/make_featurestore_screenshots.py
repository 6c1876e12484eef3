"""Regenerate the featurestore blueprint's screenshots in docs/ (its README shows them).

Runs the blueprint's default quickstart through the command line in a temporary folder
(``modelyard init --blueprint featurestore`` then ``modelyard quickstart --blueprint
featurestore --no-serve``), creates an admin key for an hour, starts ``modelyard serve
rating@production --require-auth`` on the workspace, makes one prediction, signs in with
the key in Debian's chromium (through Playwright) and photographs two pages:

    docs/featurestore-features.png   /ui/features: the views, their checks, the backfilled
                                     and rejected ranges, the services
    docs/featurestore-lineage.png    /ui/lineage?ref=REQUEST_ID: the chain behind it

    .venv/bin/python docs/make_featurestore_screenshots.py [--workspace DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_churn_screenshots  # noqa: E402
from make_churn_screenshots import cli, save  # noqa: E402
from make_screenshots import serving  # noqa: E402

MODEL = "rating"
WIDTH = 1700  # the views table is wide: its last column holds the backfill's ranges
make_churn_screenshots.WIDTH = WIDTH


def main() -> None:
    parser = argparse.ArgumentParser(description="the featurestore blueprint's screenshots")
    parser.add_argument("--workspace", type=Path, help="where to run the quickstart (and keep it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workspace or Path(tmp) / "featurestore").resolve()
        if not (root / ".modelyard" / "featurestore" / "state.json").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            cli("init", "--blueprint", "featurestore", str(root), cwd=root.parent)
            cli("quickstart", "--blueprint", "featurestore", "--no-serve", cwd=root)
        create = ("keys", "create", "--role", "admin", "--name", "ada", "--expires", "1h")
        key = cli(*create, cwd=root, capture=True).strip().splitlines()[-1]
        try:
            with serving(root, MODEL) as url:
                answer = httpx.post(
                    f"{url}/v1/models/{MODEL}/predict",
                    json={"user_id": 251, "movie_id": 76093},
                    headers={"authorization": f"Bearer {key}"},
                )
                answer.raise_for_status()
                request_id = answer.json()["request_id"]
                with sync_playwright() as p:
                    chromium = shutil.which("chromium") or "/usr/bin/chromium"
                    browser = p.chromium.launch(executable_path=chromium)
                    page = browser.new_page(viewport={"width": WIDTH, "height": 800})
                    page.goto(f"{url}/ui/sign-in?next=/ui/features")
                    page.fill("#key", key)
                    page.click("form.signin button[type=submit]")
                    page.wait_for_load_state("networkidle")
                    shots = {"features": "/ui/features", "lineage": f"/ui/lineage?ref={request_id}"}
                    for name, path in shots.items():
                        page.goto(f"{url}{path}")
                        page.wait_for_load_state("networkidle")
                        save(page, name, prefix="featurestore")
                    browser.close()
        finally:
            cli("keys", "revoke", key.split("_")[1], cwd=root)


if __name__ == "__main__":
    main()
