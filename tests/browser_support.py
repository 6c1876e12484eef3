"""A real browser for the dashboard tests: Debian's chromium, driven by Playwright.

Playwright is pointed at the system binary (``.ci/run`` installs Debian's ``chromium``),
so nothing is downloaded. Without it the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: the dashboard must be tested in a browser")
        pytest.skip(message)
    return found


@dataclass
class Watched:
    """What went wrong on a page, as a person with the developer tools open would see."""

    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}"))
        page.on(
            "response",
            lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def dashboard(root: Path, ready: str = "/ui/runs") -> Iterator[str]:
    """``modelyard ui`` on the workspace ``root`` at a free port, once ``ready`` answers
    200; its URL. The server's output goes to ``ui.log`` beside the workspace."""
    import httpx

    from server_support import CLI, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root.parent / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "ui", "-w", str(root), "--port", str(port)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
