"""Regenerate the images blueprint's screenshot in docs/ (its README shows it).

Runs the blueprint's default quickstart through the command line in a temporary folder
(``modelyard init --blueprint images`` then ``modelyard quickstart --blueprint images
--no-serve``: two versions trained, 1,000 held-out digits sent through the A/B test and
labelled), starts ``modelyard ui`` on the workspace and photographs, in Debian's
chromium (through Playwright):

    docs/images-ab.png   /ui/ab: the verdict, each variant's accuracy and latency, the
                         intervals against zero, and both versions' confusion matrices

    .venv/bin/python docs/make_images_screenshots.py [--workspace DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_churn_screenshots  # noqa: E402
from make_churn_screenshots import cli, save  # noqa: E402
from make_recommendations_screenshots import ui  # noqa: E402

make_churn_screenshots.TALLEST = 2200  # px: down to the confusion matrices


def main() -> None:
    parser = argparse.ArgumentParser(description="the images blueprint's screenshot")
    parser.add_argument("--workspace", type=Path, help="where to run the quickstart (and keep it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workspace or Path(tmp) / "images").resolve()
        if not (root / "serve.toml").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            cli("init", "--blueprint", "images", str(root), cwd=root.parent)
            cli("quickstart", "--blueprint", "images", "--no-serve", cwd=root)
        with ui(root) as url, sync_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = p.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": make_churn_screenshots.WIDTH, "height": 800})
            page.goto(f"{url}/ui/ab")
            page.wait_for_load_state("networkidle")
            save(page, "ab", prefix="images")
            browser.close()


if __name__ == "__main__":
    main()
