"""The quickstarts' progress bars (rich): every helper does nothing without a
``Progress``, as when a quickstart is called from Python or a test."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress


def bar(progress: Progress | None, text: str, total: int) -> Any:
    """A new bar of ``total`` steps (at least one); None without a ``Progress``."""
    return progress.add_task(text, total=max(total, 1)) if progress is not None else None


def advance(progress: Progress | None, task: Any, steps: int = 1) -> None:
    if progress is not None and task is not None:
        progress.advance(task, steps)


def reach(progress: Progress | None, task: Any, completed: int, description: str = "") -> None:
    """Set the bar to ``completed`` steps (at least one), and its text when given."""
    if progress is not None and task is not None:
        if description:
            progress.update(task, completed=max(completed, 1), description=description)
        else:
            progress.update(task, completed=max(completed, 1))
