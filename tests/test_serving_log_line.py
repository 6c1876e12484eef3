"""The per-request log line: written straight to the server's buffered handler when it is
the only one, identical to what the JSON formatter writes; a handler of your own still
gets a real record."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.serving._logging import BufferedStderrHandler, info_line, log_config

FIELDS = {"model": "lr", "version": 1, "request_id": "r-1", "status": 200, "latency_ms": 0.4}


@pytest.fixture
def server_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """The server's logging set-up, its stderr captured."""
    saved = {n: logging.getLogger(n) for n in ("modelyard", "modelyard.serving")}
    state = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in saved.items()}
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)  # Ray, once imported, sets its own
    logging.config.dictConfig(log_config("info"))
    yield capsys
    for name, (handlers, level, propagate) in state.items():
        lg = saved[name]
        for handler in lg.handlers:
            handler.flush()
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate
    logging.setLogRecordFactory(factory)


def _as_in_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the server's handler: pytest adds its capture handlers as each test starts."""
    ours = logging.getLogger("modelyard")
    kept = [h for h in ours.handlers if isinstance(h, BufferedStderrHandler)]
    monkeypatch.setattr(ours, "handlers", kept)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    for handler in logging.getLogger("modelyard").handlers:
        handler.flush()
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_the_direct_line_is_the_formatters_line(
    server_logging: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_in_a_server(monkeypatch)
    log = logging.getLogger("modelyard.serving")
    made: list[str] = []
    real = log.makeRecord

    def counted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append("record")
        return real(*args, **kwargs)

    monkeypatch.setattr(log, "makeRecord", counted)
    info_line(log, "predict", FIELDS)
    assert made == []  # the direct way: no LogRecord
    log.info("predict", extra=FIELDS)  # the formatter's way
    assert made == ["record"]
    direct, formatted = _lines(server_logging)
    assert list(direct) == list(formatted)  # the same keys, in the same order
    assert {k: v for k, v in direct.items() if k != "ts"} == {
        k: v for k, v in formatted.items() if k != "ts"
    }
    assert direct["message"] == "predict" and direct["request_id"] == "r-1"
    assert str(direct["ts"]).endswith("+00:00") and len(str(direct["ts"])) == 32


def test_a_handler_of_your_own_still_gets_a_record(
    server_logging: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_in_a_server(monkeypatch)
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


def test_a_record_factory_of_your_own_still_gets_a_record(
    server_logging: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_in_a_server(monkeypatch)
    made: list[str] = []
    plain = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append("record")
        return plain(*args, **kwargs)

    logging.setLogRecordFactory(factory)  # restored by the fixture
    info_line(logging.getLogger("modelyard.serving"), "predict", FIELDS)
    assert made == ["record"]
    assert [line["request_id"] for line in _lines(server_logging)] == ["r-1"]
