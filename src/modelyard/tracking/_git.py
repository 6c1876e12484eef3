"""The code version of a run: the checked-out commit, and ``-dirty`` when tracked files changed.

The commit is read from the ``.git`` files (HEAD, the ref, packed-refs), which costs a
few stat calls instead of a ~2 ms ``git`` process, and is fresh for every run, so a
commit made between two runs of one notebook is seen.

Whether tracked files differ from the commit needs ``git status``. That process starts
when the run starts and is collected when it ends, so it runs while the model trains.
Its answer is then remembered with what git itself uses to notice a change: HEAD, the
index file's stat, and the mtime, ctime, size and inode of every tracked file. A later run
whose view of all of these is the same reuses the answer without a process (a sweep of
short runs pays for git once); any edit, ``git add``, commit or checkout shows up as a
different stat and brings ``git status`` back. Files or an index changed within
``SETTLE_NS`` of the check are not trusted (coarse file-system clocks could hide a
second edit), and repositories with more than ``MAX_TRACKED`` files always ask git.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# --no-optional-locks: our status must not rewrite the index under the user's feet.
_STATUS = ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]
_LS_FILES = ["git", "--no-optional-locks", "ls-files", "-z"]
MAX_TRACKED = 5_000
SETTLE_NS = 2_000_000_000

# (mtime_ns, ctime_ns, size, inode): ctime cannot be set back by tools that keep mtimes.
Stat = tuple[int, int, int, int]


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


def _stat(path: str | Path) -> Stat | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class _Snapshot:
    """What ``git status`` answered, and the stats it answered for."""

    commit: str
    index: Stat | None
    files: dict[str, Stat]  # absolute path (a str: this check runs once per run start)
    dirty: bool

    def still_holds(self, git_dir: Path, commit: str) -> bool:
        if commit != self.commit or _stat(git_dir / "index") != self.index:
            return False
        return all(_stat(path) == seen for path, seen in self.files.items())


_snapshots: dict[Path, _Snapshot] = {}


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


@dataclass
class GitProbe:
    """The commit now, and the dirty flag: remembered, or from a background ``git status``."""

    commit: str | None
    dirty: bool | None = None
    _work_tree: Path | None = field(default=None, repr=False)
    _git_dir: Path | None = field(default=None, repr=False)
    _status: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _files: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _started_ns: int = field(default=0, repr=False)

    @classmethod
    def start(cls, folder: str | Path) -> GitProbe:
        found = find_git_dir(Path(folder).resolve())
        if found is None:
            return cls(None)
        git_dir, work_tree = found
        commit = head_commit(git_dir)
        if commit is None:
            return cls(None)
        known = _snapshots.get(work_tree)
        if known is not None and known.still_holds(git_dir, commit):
            return cls(commit, known.dirty)
        started = time.time_ns()
        try:
            status = _spawn(_STATUS, work_tree)
            files = _spawn(_LS_FILES, work_tree)
        except OSError:  # no git executable: the commit alone is still right
            return cls(commit)
        return cls(commit, None, work_tree, git_dir, status, files, started)

    def finish(self, timeout: float = 10.0) -> str | None:
        """The code version: ``<sha>``, ``<sha>-dirty``, or None outside a repository."""
        if self._status is not None and self._files is not None:
            status, files, self._status, self._files = self._status, self._files, None, None
            try:
                out, _ = status.communicate(timeout=timeout)
                listing, _ = files.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for proc in (status, files):
                    proc.kill()
                    proc.communicate()
                return self.commit
            if status.returncode == 0:
                self.dirty = bool(out.strip())
                if files.returncode == 0:
                    self._remember(listing)
        if self.commit is not None and self.dirty:
            return f"{self.commit}-dirty"
        return self.commit

    def _remember(self, listing: bytes) -> None:
        """Keep the answer for later runs, unless anything is too fresh to trust."""
        assert self._git_dir is not None and self._work_tree is not None
        assert self.commit is not None and self.dirty is not None
        names = [os.fsdecode(n) for n in listing.split(b"\0") if n]
        if len(names) > MAX_TRACKED:
            return
        trusted_before = self._started_ns - SETTLE_NS
        index = _stat(self._git_dir / "index")
        if index is not None and max(index[0], index[1]) >= trusted_before:
            return
        files: dict[str, Stat] = {}
        root = str(self._work_tree)
        for name in names:
            path = os.path.join(root, name)
            seen = _stat(path)
            if seen is None or max(seen[0], seen[1]) >= trusted_before:
                return
            files[path] = seen
        if head_commit(self._git_dir) == self.commit:
            _snapshots[self._work_tree] = _Snapshot(self.commit, index, files, self.dirty)
