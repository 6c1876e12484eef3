"""Regenerate the dashboard screenshots in docs/ (the README shows two of them).

Seeds a workspace with real runs (logistic regression on scikit-learn's breast-cancer
data at several C), starts ``modelyard ui`` on it and photographs each page in Debian's
chromium through Playwright:

    .venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

import modelyard

HERE = Path(__file__).resolve().parent


def seed(root: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    with modelyard.Workspace.init(root) as ws:
        for c in (0.01, 0.1, 1.0, 10.0):
            with ws.start_run(f"logreg-C{c}", params={"C": c, "max_iter": 400}) as run:
                for step, iters in enumerate((25, 50, 100, 200, 400)):
                    model = LogisticRegression(C=c, max_iter=iters).fit(x_train, y_train)
                    run.log_metric(
                        "log_loss", log_loss(y_test, model.predict_proba(x_test)), step=step
                    )
                run.log_metric("accuracy", accuracy_score(y_test, model.predict(x_test)))
                logged = ws.registry.log_model(run, model, input_example=x_train.head(5))
            version = ws.registry.register("breast_cancer", logged).version
            ws.registry.set_alias("breast_cancer", "production", version)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        seed(root)
        port = 8187
        cli = [sys.executable, "-c", "from modelyard.cli import main; main()"]
        proc = subprocess.Popen([*cli, "ui", "-w", str(root), "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{url}/ui/runs").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"))
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{url}/ui/runs")
                page.screenshot(path=str(HERE / "ui-runs.png"))
                boxes = page.locator("#runs tbody input[type=checkbox]")
                for i in range(3):
                    boxes.nth(i).check()
                page.click("#compare button[type=submit]")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(HERE / "ui-compare.png"), full_page=True)
                page.goto(f"{url}/ui/models/breast_cancer")
                page.screenshot(path=str(HERE / "ui-model.png"), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
