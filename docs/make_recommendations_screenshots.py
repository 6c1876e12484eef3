"""Regenerate the recommendations blueprint's screenshot in docs/ (its README shows it).

Runs the blueprint's default quickstart through the command line in a temporary folder
(``modelyard init --blueprint recommendations`` then ``modelyard quickstart --blueprint
recommendations --no-serve``: the holdout evaluation and seven published nights), then
tightens ``[blueprint.bias]`` (coverage at least 50%, no genre above twice its catalogue
share) and runs the next night with ``modelyard jobs run recommendations-nightly``, which
the checks block. Starts ``modelyard ui`` on the workspace and photographs, in Debian's
chromium (through Playwright):

    docs/recommendations-nights.png   /ui/recommendations: the live and kept nights, every
                                      night's verdict and checks, the checks over the
                                      nights, the live night's genres, the holdout

    .venv/bin/python docs/make_recommendations_screenshots.py [--workspace DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_churn_screenshots  # noqa: E402
from make_churn_screenshots import CLEAN, CLI, cli, save  # noqa: E402

JOB = "recommendations-nightly"
make_churn_screenshots.TALLEST = 3000  # px: the whole page, down to the holdout


def main() -> None:
    parser = argparse.ArgumentParser(description="the recommendations blueprint's screenshot")
    parser.add_argument("--workspace", type=Path, help="where to run the quickstart (and keep it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.workspace or Path(tmp) / "recommendations").resolve()
        if not (root / ".modelyard" / "recommendations" / "state.json").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            cli("init", "--blueprint", "recommendations", str(root), cwd=root.parent)
            cli("quickstart", "--blueprint", "recommendations", "--no-serve", cwd=root)
            block_the_next_night(root)
        with ui(root) as url, sync_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = p.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": make_churn_screenshots.WIDTH, "height": 800})
            page.goto(f"{url}/ui/recommendations")
            page.wait_for_load_state("networkidle")
            save(page, "nights", prefix="recommendations")
            browser.close()


def block_the_next_night(root: Path) -> None:
    """Tighten the bias checks and run the night after the anchor: it is blocked."""
    config = root / "modelyard.toml"
    text = config.read_text()
    text = text.replace("min_coverage = 0.05", "min_coverage = 0.5")
    text = text.replace("max_exposure_ratio = 10.0", "max_exposure_ratio = 2.0")
    config.write_text(text)
    anchor = re.search(r'^anchor = "(\d{4}-\d{2}-\d{2})"', text, re.MULTILINE)
    if anchor is None:
        raise SystemExit("the quickstart wrote no anchor into modelyard.toml")
    day = datetime.strptime(anchor.group(1), "%Y-%m-%d")
    # The slot that starts on the anchor's night ends the next day: its night is blocked,
    # so the command exits 1 (and the anchor's night stays live).
    done = subprocess.run(
        [*CLI, "jobs", "run", JOB, "--quiet", "--date", f"{day:%Y-%m-%d}T02:00:00+00:00"],
        cwd=root,
        env={**CLEAN, "COLUMNS": "250"},
        capture_output=True,
        text=True,
    )
    said = " ".join(done.stdout.split() + done.stderr.split())
    if done.returncode != 1 or "not published" not in said:
        raise SystemExit(f"the night was not blocked (exit {done.returncode}): {said[-2000:]}")


@contextmanager
def ui(root: Path) -> Iterator[str]:
    """``modelyard ui`` on the workspace, on a free port; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (root.parent / "ui.log").open("wb") as log:
        command = [*CLI, "ui", "-w", str(root), "--port", str(port)]
        proc = subprocess.Popen(command, stdout=log, stderr=log, env=CLEAN)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/ui/recommendations").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit((root.parent / "ui.log").read_text())
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
