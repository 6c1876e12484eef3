"""Structured (JSON) log lines for the server, one object per line on stderr.

Every line carries the fields passed in ``extra`` (model, version, request id,
latency); uvicorn's own loggers are routed through the same formatter so that no
line of the server is free text.

Lines are written in batches (``BufferedStderrHandler``): a write to stderr per request
cost more than the rest of the log line. A warning or worse is written at once; info
lines within ``FLUSH_S``, so a killed server loses at most that much of its request log
(the prediction log, not this one, is the durable record of every answer).

The per-request line (``info_line``) skips the ``LogRecord`` and the handler chain when
they would do nothing but this: the logger reaches exactly one handler, ours, with no
filter on the way, and no record factory of your own. It is then formatted as
``JsonFormatter`` would and buffered, at a quarter of the cost. Any other set-up (a
handler of your own, a filter, a record factory) gets a record.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from modelyard._redact import redact

logger = logging.getLogger("modelyard.serving")

# LogRecord attributes that are not user fields.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    """``created`` as ISO 8601 in UTC with microseconds (``datetime.isoformat``'s form),
    the date and time formatted once per second."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((created - whole) * 1e6):06d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                line[key] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


FLUSH_S = 0.2
_FLUSH_BYTES = 64 * 1024


class BufferedStderrHandler(logging.Handler):
    """Formatted lines kept in memory and written to stderr together: every ``FLUSH_S``
    (by a thread that sleeps while nothing waits), at once for WARNING and above, and
    whenever ``_FLUSH_BYTES`` are waiting."""

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._size = 0
        self._pending = threading.Event()
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._buffer(line, record.levelno >= logging.WARNING)  # under the handler's lock

    def add(self, line: str) -> None:
        """Buffer an info line already formatted (``info_line``)."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._buffer(line, urgent=False)

    def _buffer(self, line: str, urgent: bool) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if urgent or self._size >= _FLUSH_BYTES:
            self.flush()  # the lock is re-entrant
            return
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(
                target=self._flush_often, name="modelyard-log", daemon=True
            )
            self._flusher.start()
        self._pending.set()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if not self._lines:
                return
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            self._size = 0
            stream = sys.stderr  # looked up now: a test may have replaced it
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # stderr closed (the process is ending)
                pass

    def _flush_often(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            time.sleep(FLUSH_S)  # let lines gather
            self.flush()

    def close(self) -> None:
        self.flush()
        super().close()


_PID = os.getpid()
os.register_at_fork(after_in_child=lambda: globals().update(_PID=os.getpid()))


def info_line(log: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` at INFO with ``fields``, as ``log.info(message, extra=fields)`` would
    (see the module docstring); the caller has checked ``log.isEnabledFor(INFO)``."""
    handler = _only_handler(log)
    if handler is None:
        # As logger.info, without its search of the stack for the caller (half its cost).
        log.handle(
            log.makeRecord(log.name, logging.INFO, __file__, 0, message, (), None, None, fields)
        )
        return
    line = {
        "ts": _timestamp(time.time()),
        "level": "info",
        "logger": log.name,
        "message": redact(message),
        "pid": _PID,
        **fields,
    }
    handler.add(orjson.dumps(line, default=str).decode())


def _only_handler(log: logging.Logger) -> BufferedStderrHandler | None:
    """Our handler when it is the only one an INFO record of ``log`` reaches, unfiltered,
    and records are plain ``LogRecord`` objects (a record factory may add fields: Ray's
    does)."""
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return None
    found: BufferedStderrHandler | None = None
    current: logging.Logger | None = log
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not BufferedStderrHandler
                or handler.filters
                or handler.level > logging.INFO
                or type(handler.formatter) is not JsonFormatter
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


def log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and modelyard: JSON to stderr."""
    handler = {"()": BufferedStderrHandler, "formatter": "json"}
    named = {"level": level.upper(), "handlers": ["json"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "modelyard": named,
            "uvicorn": named,
            "uvicorn.error": named,
            "uvicorn.access": {**named, "level": "WARNING"},
        },
    }


def configure(level: str = "info") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
