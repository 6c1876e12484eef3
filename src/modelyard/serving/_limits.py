"""Limits on what one prediction request may hold, for every model of a server.

``--max-batch-rows``: a predict body with more records, or an OIP infer whose batch
dimension is larger, is answered 413 ``body_too_large`` before the model sees it.
``--max-string-length``: a string field's value with more characters is a 422
``validation_failed`` naming the field, checked by the record validator in its one pass
(``contracts/_validate.py``). ``--max-body-bytes`` (``app.py``) caps the bytes.
"""

from __future__ import annotations

from modelyard.errors import ConfigError, PayloadTooLargeError

DEFAULT_MAX_BATCH_ROWS = 10_000
DEFAULT_MAX_STRING_LENGTH = 65_536


def check_request_limits(max_batch_rows: int, max_string_length: int) -> None:
    """One-line errors for limits that would refuse every request."""
    for flag, value in (
        ("--max-batch-rows", max_batch_rows),
        ("--max-string-length", max_string_length),
    ):
        if value < 1:
            raise ConfigError(f"{flag} {value}: expected 1 or more")


def too_many_rows(rows: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request holds {rows} rows, more than the {limit} this server takes in one "
        "request (modelyard serve --max-batch-rows); split it into smaller requests"
    )
