"""The per-request log line: written straight to the server's buffered handler when it is
the only one, identical to what the JSON formatter writes; a handler of your own still
gets a real record."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from modelyard.serving._logging import BufferedStderrHandler, info_line, log_config

FIELDS = {"model": "lr", "version": 1, "request_id": "r-1", "status": 200, "latency_ms": 0.4}


@pytest.fixture
def server_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The server's logging set-up, its stderr captured."""
    saved = {n: logging.getLogger(n) for n in ("modelyard", "modelyard.serving")}
    state = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in saved.items()}
    logging.config.dictConfig(log_config("info"))
    ours = saved["modelyard"]
    # As in `modelyard serve`: pytest's own capture handlers are not on this logger there.
    ours.handlers = [h for h in ours.handlers if isinstance(h, BufferedStderrHandler)]
    yield capsys
    for name, (handlers, level, propagate) in state.items():
        lg = saved[name]
        for handler in lg.handlers:
            handler.flush()
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    for handler in logging.getLogger("modelyard").handlers:
        handler.flush()
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_the_direct_line_is_the_formatters_line(server_logging: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("modelyard.serving")
    info_line(log, "predict", FIELDS)
    log.info("predict", extra=FIELDS)  # the formatter's way
    direct, formatted = _lines(server_logging)
    assert list(direct) == list(formatted)  # the same keys, in the same order
    assert {k: v for k, v in direct.items() if k != "ts"} == {
        k: v for k, v in formatted.items() if k != "ts"
    }
    assert direct["message"] == "predict" and direct["request_id"] == "r-1"
    assert str(direct["ts"]).endswith("+00:00") and len(str(direct["ts"])) == 32


def test_a_handler_of_your_own_still_gets_a_record(
    server_logging: pytest.CaptureFixture[str],
) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    log = logging.getLogger("modelyard.serving")
    mine = Keep()
    log.addHandler(mine)
    try:
        info_line(log, "predict", FIELDS)
    finally:
        log.removeHandler(mine)
    assert [(r.getMessage(), getattr(r, "request_id", None)) for r in seen] == [("predict", "r-1")]
    assert [line["request_id"] for line in _lines(server_logging)] == ["r-1"]  # ours too
