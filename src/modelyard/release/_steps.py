"""Progress of a release check: each slow step of ``evaluate`` announced as it runs.

A check loads two models, scores both on the holdout and replays rows one by one for
latency: tens of seconds on a text model. The caller passes a ``CheckProgress`` (the
CLI prints each step on stderr, so ``--json`` on stdout stays machine-readable); the
default says nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class CheckProgress(Protocol):
    """Told of each step of a release check; ``step`` is entered for as long as it runs."""

    def step(self, text: str) -> AbstractContextManager[object]: ...


class QuietCheck:
    """Progress that shows nothing (the Python API's default)."""

    def step(self, text: str) -> AbstractContextManager[object]:
        return nullcontext()
