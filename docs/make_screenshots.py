"""Regenerate the dashboard screenshots in docs/ (the README shows two of them).

Seeds a workspace with real work: logistic regression on scikit-learn's breast-cancer
data at several C (runs, versions, a canary), a feature view with a backfill, two
scheduled jobs run by the scheduler, a week of recorded drift and quality, and alert
rules. Then starts ``modelyard serve --require-auth`` on it, signs in with an admin key
in Debian's chromium (through Playwright), sends predictions and labels, and
photographs every page, the Serving page while traffic flows:

    .venv/bin/python docs/make_screenshots.py

Each page is docs/ui-<page>.png, 1280 px wide, the whole page (cut at 1800 px).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from playwright.sync_api import FloatRect, Page, sync_playwright
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

import modelyard

HERE = Path(__file__).resolve().parent
TALLEST = 1800  # px of a page photographed; a longer page is cut there (PNGs stay small)
MODEL = "breast_cancer"
CLI = [sys.executable, "-c", "from modelyard.cli import main; main()"]

PIPELINES = """
import time


def refresh_features(ctx):
    print("materializing clinic_stats up to", ctx.logical_date)
    time.sleep(0.2)
    print("wrote 5 keys to the online store")


def retrain(ctx):
    print("loading labelled predictions before", ctx.logical_date)
    print("fitting LogisticRegression(C=1.0) on 426 rows")
    if ctx.logical_date.hour % 3 == 0:
        raise RuntimeError("accuracy 0.91 is below the release gate of 0.93")
    print("registered a new version of breast_cancer")
"""

CONFIG = """
[jobs.refresh_features]
function = "pipelines:refresh_features"
schedule = "0 * * * *"

[jobs.retrain]
function = "pipelines:retrain"
schedule = "0 * * * *"

[[alerts.rules]]
name = "cancer-p99"
model = "breast_cancer@production"
metric = "slo.latency_p99_ms"
condition = "> 250"
window = "1h"

[[alerts.rules]]
name = "cancer-errors"
model = "breast_cancer@production"
metric = "slo.error_rate"
condition = "> 0.01"
window = "1h"

[[alerts.rules]]
name = "cancer-drift"
model = "breast_cancer@production"
metric = "drift.share"
condition = "> 0.2"
window = "1d"
"""


def data() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The ten ``mean *`` columns (of thirty), so that a page's tables stay short."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x = x[[c for c in x.columns if c.startswith("mean ")]]
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    return x_train, x_test, y_train, y_test


def drifted(x: pd.DataFrame, amount: float) -> pd.DataFrame:
    """``x`` with its radius columns grown by ``amount`` (a new scanner, say)."""
    out = x.copy()
    for column in ("mean radius", "mean perimeter", "mean area"):
        out[column] = out[column] * (1 + amount)
    return out


def seed_runs(ws: modelyard.Workspace) -> None:
    x_train, x_test, y_train, y_test = data()
    for c in (0.01, 0.1, 1.0, 10.0):
        with ws.start_run(f"logreg-C{c}", params={"C": c, "max_iter": 400}) as run:
            run.log_dataset("train", x_train.assign(target=y_train))
            for step, iters in enumerate((25, 50, 100, 200, 400)):
                model = LogisticRegression(C=c, max_iter=iters).fit(x_train, y_train)
                run.log_metric("log_loss", log_loss(y_test, model.predict_proba(x_test)), step=step)
            run.log_metric("accuracy", accuracy_score(y_test, model.predict(x_test)))
            logged = ws.registry.log_model(
                run, model, input_example=x_train.head(5), reference_data=x_train
            )
        version = ws.registry.register(MODEL, logged).version
        ws.registry.set_alias(MODEL, "production", version)
    # Version 4 serves; version 3 is the candidate of a canary at 20%.
    from modelyard.registry import set_traffic

    ws.registry.set_alias(MODEL, "candidate", 3)
    set_traffic(ws.registry, MODEL, "candidate", 20)


def seed_features(ws: modelyard.Workspace, root: Path) -> None:
    from modelyard.features import Entity, FeatureService, FeatureView, FileSource, Range

    rng = np.random.default_rng(0)
    day0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(7)
    rows = [(d, clinic) for d in range(7) for clinic in range(1, 6)]
    pd.DataFrame(
        {
            "clinic_id": [clinic for _, clinic in rows],
            "event_timestamp": [day0 + timedelta(days=d, hours=18) for d, _ in rows],
            "scans": [int(rng.integers(20, 80)) for _ in rows],
            "mean_radius_avg": [float(rng.normal(14.1, 0.8)) for _ in rows],
        }
    ).to_parquet(root / "clinic_stats.parquet")
    clinic = Entity("clinic", {"clinic_id": "int64"}, description="a screening clinic")
    view = FeatureView(
        "clinic_stats",
        entity=clinic,
        source=FileSource(str(root / "clinic_stats.parquet")),
        features={"scans": "int64", "mean_radius_avg": "float64"},
        ttl=timedelta(days=2),
        owner="team-imaging",
        tags={"tier": "gold"},
        checks=(Range("scans", 0, 500),),
        description="daily scans and mean radius per clinic",
    )
    service = FeatureService("triage", [view], description="what the triage model reads")
    ws.features.apply([clinic, view, service])
    ws.features.backfill("clinic_stats", day0, day0 + timedelta(days=7))
    ws.features.materialize(day0, day0 + timedelta(days=7))


def seed_jobs(ws: modelyard.Workspace) -> None:
    """Six hourly slots of each job, run by the scheduler as it would have run them."""
    from modelyard.jobs import Scheduler, open_runner, wait_all, workspace_jobs

    start = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=6)
    with open_runner(ws, owner="screenshots", sleep=lambda _: None) as runner:
        sched = Scheduler(workspace_jobs(ws), runner)
        for hour in range(1, 7):
            wait_all(sched.tick(start + timedelta(hours=hour)))
        sched.close()


def seed_history(ws: modelyard.Workspace) -> None:
    """A week of daily drift and quality values, computed on real slices of the test set
    whose radius grows a little each day (what ``monitor check`` would have recorded)."""
    from modelyard.monitoring import drift, drift_values, record_metrics

    x_train, x_test, _, y_test = data()
    model = ws.registry.load(f"{MODEL}@production")
    version = ws.registry.get(f"{MODEL}@production").version
    now = datetime.now(UTC)
    for day in range(7, 0, -1):
        at = now - timedelta(days=day)
        rows = x_test.sample(120, random_state=day)
        current = drifted(rows, 0.02 * (7 - day))
        report = drift(x_train, current, min_rows=50)
        record_metrics(
            ws.metadata,
            MODEL,
            drift_values(report),
            window=timedelta(days=1),
            version=version,
            at=at,
        )
        scores = model.predict(current)["probability_1"].to_numpy()
        quality = {
            "quality.accuracy": accuracy_score(y_test.loc[rows.index], scores > 0.5),
            "quality.roc_auc": roc_auc_score(y_test.loc[rows.index], scores),
        }
        record_metrics(
            ws.metadata, MODEL, quality, window=timedelta(days=1), version=version, at=at
        )


def seed(root: Path) -> str:
    """The workspace; returns an admin key's secret."""
    from modelyard.security import create_key

    modelyard.Workspace.init(root).close()
    (root / "pipelines.py").write_text(PIPELINES)
    with (root / "modelyard.toml").open("a") as f:
        f.write(CONFIG)
    with modelyard.Workspace(root) as ws:
        seed_runs(ws)
        seed_features(ws, root)
        seed_jobs(ws)
        seed_history(ws)
        return create_key(ws.metadata, "admin", name="ada")[1]


@contextmanager
def serving(root: Path, model: str = MODEL) -> Iterator[str]:
    """``modelyard serve MODEL@production --require-auth`` on a free port; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [*CLI, "serve", f"{model}@production", "-w", str(root), "--port", str(port)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    log = (root.parent / "serve.log").open("wb")
    proc = subprocess.Popen([*command, "--require-auth"], stderr=log, env=clean)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit((root.parent / "serve.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait()
        log.close()


def predict_and_label(client: httpx.Client) -> None:
    """The test set three times (the last two with grown radii) 20 rows a call; a label
    for every row, as a labelling team would send them back."""
    x_train, x_test, _, y_test = data()
    for amount in (0.0, 0.1, 0.2):
        rows = drifted(x_test, amount)
        for i in range(0, len(rows), 20):
            batch = rows.iloc[i : i + 20]
            answer = client.post(f"/v1/models/{MODEL}/predict", json=batch.to_dict("records"))
            answer.raise_for_status()
            labels = [
                {"request_id": answer.json()["request_id"], "row": j, "label": int(label)}
                for j, label in enumerate(y_test.loc[batch.index])
            ]
            client.post("/v1/feedback", json=labels).raise_for_status()


class Traffic(threading.Thread):
    """Single-row predictions at a rate that wanders, until stopped."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()

    def run(self) -> None:
        _, x_test, _, _ = data()
        rows = x_test.to_dict("records")
        rng = random.Random(0)
        while not self.stop.is_set():
            self.client.post(f"/v1/models/{MODEL}/predict", json=rng.choice(rows))
            time.sleep(rng.uniform(0.005, 0.05))


def save(page: Page, name: str) -> None:
    """The whole page as docs/ui-NAME.png, cut at ``TALLEST`` px."""
    height = min(page.evaluate("document.documentElement.scrollHeight"), TALLEST)
    clip = FloatRect(x=0, y=0, width=1280, height=height)
    page.screenshot(path=str(HERE / f"ui-{name}.png"), full_page=True, clip=clip)
    print(f"docs/ui-{name}.png  {page.url}")


def shoot(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    save(page, name)


def photograph(root: Path, url: str, key: str) -> None:
    x_train, _, _, _ = data()
    column = x_train.columns[0]  # mean radius: it drifted
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=30) as client,
        sync_playwright() as p,
    ):
        predict_and_label(client)
        subprocess.run([*CLI, "monitor", "check", "-w", str(root)], check=True)
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        shoot(page, f"{url}/ui/sign-in?next=/ui/runs", "sign-in")
        page.fill("#key", key)
        page.click("form.signin button[type=submit]")
        page.wait_for_load_state("networkidle")
        shoot(page, f"{url}/ui/runs", "runs")
        boxes = page.locator("#runs tbody input[type=checkbox]")
        for i in range(3):
            boxes.nth(i).check()
        page.click("#compare button[type=submit]")
        page.wait_for_load_state("networkidle")
        save(page, "compare")
        page.goto(f"{url}/ui/runs")
        page.click("#runs tbody tr >> nth=0 >> td:nth-child(2) a")
        page.wait_for_load_state("networkidle")
        save(page, "run")
        shoot(page, f"{url}/ui/models", "models")
        shoot(page, f"{url}/ui/models/{MODEL}", "model")
        traffic = Traffic(client)
        traffic.start()
        try:
            page.goto(f"{url}/ui/serving")
            time.sleep(13)  # six refreshes: the rate chart has a line
            save(page, "serving")
        finally:
            traffic.stop.set()
            traffic.join()
        shoot(page, f"{url}/ui/monitoring", "monitoring")
        shoot(page, f"{url}/ui/monitoring/{MODEL}", "monitoring-model")
        shoot(page, f"{url}/ui/monitoring/{MODEL}/columns/{column}", "column")
        shoot(page, f"{url}/ui/monitoring/{MODEL}/quality", "quality")
        shoot(page, f"{url}/ui/monitoring/{MODEL}/report", "report")
        shoot(page, f"{url}/ui/jobs", "jobs")
        page.goto(f"{url}/ui/jobs")
        page.click("#job-runs tbody tr.success >> nth=0 >> a")
        page.wait_for_load_state("networkidle")
        save(page, "job-run")
        shoot(page, f"{url}/ui/features", "features")
        browser.close()


def main() -> None:
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # few iterations on purpose
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        key = seed(root)
        with serving(root) as url:
            photograph(root, url, key)


if __name__ == "__main__":
    main()
