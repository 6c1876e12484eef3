"""The code version a run records: remembered across a sweep, never stale after a change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import modelyard
from git_support import git
from modelyard.tracking import _git


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed repository as the working folder, with the settle window off."""
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "train.py").write_text("print('v1')\n")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "v1")
    monkeypatch.chdir(folder)
    # Files were written a moment ago; the production window would (rightly) not trust
    # them for two seconds. The logic under test is the same with the window at zero.
    monkeypatch.setattr(_git, "SETTLE_NS", 0)
    monkeypatch.setattr(_git, "_snapshots", {})
    return folder


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The git commands the probe starts (they still run for real)."""
    calls: list[list[str]] = []
    real = _git._spawn

    def counting(args: list[str], cwd: Path) -> Any:
        calls.append(args)
        return real(args, cwd)

    monkeypatch.setattr(_git, "_spawn", counting)
    return calls


def run_commit(ws: modelyard.Workspace) -> str | None:
    with ws.start_run("r") as run:
        pass
    return ws.runs.get(run.run_id).git_commit


def test_a_sweep_asks_git_once_while_nothing_changes(
    repo: Path, spawned: list[list[str]], sqlite_workspace: modelyard.Workspace
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    commits = [run_commit(sqlite_workspace) for _ in range(5)]
    assert commits == [head] * 5
    assert sum("status" in c for c in spawned) == 1


@pytest.mark.parametrize(
    "change",
    ["edit", "same-size-edit", "stage", "delete", "mtime-reset"],
)
def test_any_change_after_the_answer_is_remembered_is_seen(
    repo: Path, spawned: list[list[str]], sqlite_workspace: modelyard.Workspace, change: str
) -> None:
    import os

    head = git(repo, "rev-parse", "HEAD")
    assert run_commit(sqlite_workspace) == head
    assert run_commit(sqlite_workspace) == head  # remembered
    target = repo / "train.py"
    before = target.stat()
    if change == "edit":
        target.write_text("print('v2, longer')\n")
    elif change == "same-size-edit":
        target.write_text("print('v9')\n")
    elif change == "stage":
        target.write_text("print('v2, staged')\n")
        git(repo, "add", "train.py")
    elif change == "delete":
        target.unlink()
    else:  # a tool that restores the old mtime after writing
        target.write_text("print('v8')\n")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert run_commit(sqlite_workspace) == f"{head}-dirty"
    assert sum("status" in c for c in spawned) == 2


def test_a_commit_between_runs_is_seen_without_waiting(
    repo: Path, spawned: list[list[str]], sqlite_workspace: modelyard.Workspace
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    assert run_commit(sqlite_workspace) == first
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "v2")
    second = git(repo, "rev-parse", "HEAD")
    assert run_commit(sqlite_workspace) == second


def test_fresh_files_are_not_trusted(
    repo: Path,
    spawned: list[list[str]],
    sqlite_workspace: modelyard.Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within the settle window every run asks git again (coarse clocks could hide an edit)."""
    monkeypatch.setattr(_git, "SETTLE_NS", 3_600 * 10**9)
    for _ in range(3):
        run_commit(sqlite_workspace)
    assert sum("status" in c for c in spawned) == 3


def test_large_repositories_always_ask_git(
    repo: Path,
    spawned: list[list[str]],
    sqlite_workspace: modelyard.Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_git, "MAX_TRACKED", 1)
    for _ in range(3):
        run_commit(sqlite_workspace)
    assert sum("status" in c for c in spawned) == 3
