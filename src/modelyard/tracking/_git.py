"""The code version of a run: the checked-out commit, and ``-dirty`` when tracked files changed.

The commit is read from the ``.git`` files (HEAD, the ref, packed-refs), which costs a
few stat calls instead of a ~2 ms ``git`` process, and is fresh for every run, so a
commit made between two runs of one notebook is seen. Whether tracked files differ
from the commit needs ``git status``; that process is started when the run starts and
collected when it ends, so it runs while the model trains instead of before.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_STATUS = ["git", "status", "--porcelain", "--untracked-files=no"]


def find_git_dir(folder: Path) -> tuple[Path, Path] | None:
    """(git dir, work tree) of the repository holding ``folder``, or None."""
    for candidate in (folder, *folder.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return dot_git, candidate
        if dot_git.is_file():  # a worktree or submodule: ".git" names the real git dir
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                return (candidate / text[len("gitdir:") :].strip()).resolve(), candidate
    return None


def head_commit(git_dir: Path) -> str | None:
    """The commit HEAD points at, read from files; None on an unborn branch."""
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None  # detached HEAD holds the commit itself
        ref = head[len("ref:") :].strip()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        for base in (git_dir, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    except OSError:
        return None
    return None


@dataclass
class GitProbe:
    """The commit now, and a ``git status`` running in the background for the dirty flag."""

    commit: str | None
    _status: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, folder: str | Path) -> GitProbe:
        found = find_git_dir(Path(folder).resolve())
        if found is None:
            return cls(None)
        git_dir, work_tree = found
        commit = head_commit(git_dir)
        if commit is None:
            return cls(None)
        try:
            status = subprocess.Popen(
                _STATUS, cwd=work_tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError:  # no git executable: the commit alone is still right
            return cls(commit)
        return cls(commit, status)

    def finish(self, timeout: float = 10.0) -> str | None:
        """The code version: ``<sha>``, ``<sha>-dirty``, or None outside a repository."""
        if self._status is None:
            return self.commit
        status, self._status = self._status, None
        try:
            out, _ = status.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            status.kill()
            status.communicate()
            return self.commit
        if status.returncode == 0 and out.strip():
            return f"{self.commit}-dirty"
        return self.commit
