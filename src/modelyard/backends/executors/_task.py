"""What travels to a worker and back: a task as bytes, its answer as bytes.

The function and its item are cloudpickled together by the caller: a closure or a
lambda travels by value, a module's function by reference. The caller's ``sys.path``
travels beside them, so that a module the caller imported from a workspace folder
(``pipelines.py``) imports in the worker as well. The answer is built in the worker,
never raised there: every failure comes back as text (some exceptions do not unpickle)
plus the exception itself when it pickles.
"""

from __future__ import annotations

import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import cloudpickle

from modelyard.errors import TaskError

if TYPE_CHECKING:
    from modelyard.backends.executors import Results, Settled

R = TypeVar("R")


class PayloadExecutor(ABC):
    """``Executor.map`` for executors that run tasks as pickled payloads: each
    implementation only opens its workers and runs the payloads (``_run``)."""

    @abstractmethod
    def open(self) -> None: ...

    def map(
        self,
        fn: Callable[[Any], R],
        items: Sequence[Any],
        *,
        names: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> Results[R]:
        payloads = pack(fn, items)  # a function that does not pickle fails here, at once
        labels = task_names(names, len(payloads))
        self.open()
        return self._run(labels, search_path(), payloads, timeout_s)

    @abstractmethod
    def _run(
        self,
        names: list[str],
        paths: tuple[str, ...],
        payloads: list[bytes],
        timeout_s: float | None,
    ) -> Generator[Settled[Any], None, None]: ...


def pack(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[bytes]:
    """Each task's payload: the function with one item (one pickle per task)."""
    return [_dumps((fn, item)) for item in items]


def task_names(names: Sequence[str] | None, count: int) -> list[str]:
    """The given names (one per item), or ``#0``, ``#1``…"""
    if names is None:
        return [f"#{i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} names for {count} items; give one name per item")
    return list(names)


def search_path() -> tuple[str, ...]:
    return tuple(sys.path)


def run(paths: Sequence[str], payload: bytes) -> bytes:
    """Run one task here (in a worker); its answer as bytes."""
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    try:
        fn, item = cloudpickle.loads(payload)
        return _dumps((True, fn(item)))
    except BaseException as exc:  # the task's failure is its answer, never the worker's end
        return _failure(exc)


def _failure(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    line = _first_line(str(exc))
    reason = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    try:
        raised: bytes | None = _dumps(exc)
    except Exception:  # an exception holding a lock or a socket: its text is enough
        raised = None
    try:
        return _dumps((False, (reason, text, raised)))
    except Exception:
        return _dumps((False, (reason, text, None)))


def settle(name: str, answer: bytes) -> tuple[Any, TaskError | None]:
    """(value, None) or (None, the error naming the task) from a worker's answer."""
    try:
        ok, body = cloudpickle.loads(answer)
    except Exception as exc:  # a result whose class the caller cannot import
        return None, TaskError(name, f"its result cannot be read here ({_first_line(str(exc))})")
    if ok:
        return body, None
    reason, text, raised = body
    error = TaskError(name, reason, traceback=text)
    if raised is not None:
        try:
            error.__cause__ = cloudpickle.loads(raised)
        except Exception:  # e.g. an __init__ whose arguments are not its args
            pass
    return None, error


def _dumps(value: Any) -> bytes:
    return cast(bytes, cloudpickle.dumps(value))


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""
