"""The errors modelyard raises, each with a stable ``code``, an HTTP status and a remedy.

Every class also subclasses the builtin that callers already catch, so
``except LookupError`` keeps working around ``NotFoundError``::

    ModelyardError (Exception)                      code            status
    ├── ConfigError (ValueError)                    config_invalid  400
    ├── InvalidInputError (ValueError)              invalid_input   400
    │   ├── SchemaValidationError                   validation_failed 422
    │   ├── UncomputableInputError                  input_not_computable 422
    │   └── PayloadTooLargeError                    body_too_large  413
    │   └── UnsupportedMediaTypeError               unsupported_media_type 415
    ├── UnauthenticatedError (PermissionError)      unauthenticated 401
    ├── ForbiddenError (PermissionError)            forbidden       403
    ├── RateLimitedError (RuntimeError)             rate_limited    429
    ├── NotFoundError (LookupError)                 not_found       404
    ├── WorkspaceNotFoundError (FileNotFoundError)  workspace_not_found 404
    ├── ConflictError (RuntimeError)                conflict        409
    ├── ReleaseBlockedError (RuntimeError)          release_blocked 409
    ├── BackendUnavailableError (ConnectionError)   backend_unavailable 503
    │   └── OnlineStoreUnavailableError             online_store_unavailable 503
    │       └── OnlineStoreMissingError                 (the same code)
    ├── NotReadyError (RuntimeError)                not_ready       503
    ├── PredictionLogUnavailableError (OSError)     prediction_log_unavailable 503
    ├── TaskError (RuntimeError)                    task_failed     500
    ├── DeadlineExceededError (TimeoutError)        timeout         504
    ├── RequestTimeoutError (TimeoutError)          request_timeout 408
    └── IntegrityError (RuntimeError)               integrity_error 500

A message says what went wrong, where, and how to fix it, in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "ConflictError",
    "DeadlineExceededError",
    "ForbiddenError",
    "FieldError",
    "IntegrityError",
    "InvalidInputError",
    "ModelyardError",
    "NotFoundError",
    "NotReadyError",
    "OnlineStoreMissingError",
    "OnlineStoreUnavailableError",
    "PayloadTooLargeError",
    "PredictionLogUnavailableError",
    "RateLimitedError",
    "ReleaseBlockedError",
    "RequestTimeoutError",
    "SchemaValidationError",
    "TaskError",
    "UnauthenticatedError",
    "UncomputableInputError",
    "UnsupportedMediaTypeError",
    "WorkspaceNotFoundError",
]


class ModelyardError(Exception):
    """Base class: a one-line ``message`` with the remedy, a ``code`` and an HTTP ``status``."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class ConfigError(ModelyardError, ValueError):
    code = "config_invalid"
    status = 400


class InvalidInputError(ModelyardError, ValueError):
    code = "invalid_input"
    status = 400


class FieldError(dict[str, Any]):
    """One problem with one field of one record: ``{"field", "message", "row"}``."""

    def __init__(self, field: str, message: str, row: int | None = None) -> None:
        super().__init__(field=field, message=message, row=row)


class SchemaValidationError(InvalidInputError):
    """Data did not match a schema; ``errors`` holds one entry per bad field."""

    code = "validation_failed"
    status = 422

    def __init__(self, errors: Sequence[FieldError], *, what: str = "input") -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else FieldError("?", "invalid")
        where = f"row {first['row']}, " if first.get("row") is not None else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"{what} {where}field '{first['field']}': {first['message']}{more}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "errors": self.errors}


class UncomputableInputError(InvalidInputError):
    """A valid input the model cannot compute with: its arithmetic overflowed (the model
    raised after a floating-point overflow, or answered NaN or an infinity).

    A 4xx: the same model answers other inputs, so it is not an outage signal.
    """

    code = "input_not_computable"
    status = 422


class PayloadTooLargeError(InvalidInputError):
    code = "body_too_large"
    status = 413


class UnsupportedMediaTypeError(InvalidInputError):
    """A route that changes state was sent something other than JSON (a browser form
    or ``text/plain`` post from another site can be nothing else)."""

    code = "unsupported_media_type"
    status = 415


class UnauthenticatedError(ModelyardError, PermissionError):
    """No API key, or one that is unknown, revoked or expired."""

    code = "unauthenticated"
    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}

    def __init__(self, message: str, reason: str = "missing") -> None:
        super().__init__(message)
        self.reason = reason  # missing, malformed, unknown, revoked, expired (for metrics)


class ForbiddenError(ModelyardError, PermissionError):
    """A valid key whose role (or model list) does not cover the route."""

    code = "forbidden"
    status = 403

    def __init__(self, message: str, reason: str = "wrong_role") -> None:
        super().__init__(message)
        self.reason = reason  # wrong_role, wrong_model (for metrics)


class RateLimitedError(ModelyardError, RuntimeError):
    """A key sent more requests than its rate allows: retry after ``Retry-After``."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class NotFoundError(ModelyardError, LookupError):
    code = "not_found"
    status = 404


class WorkspaceNotFoundError(ModelyardError, FileNotFoundError):
    """A folder opened as a workspace is none: no ``modelyard.toml``, no ``.modelyard/``.

    Opening never creates a workspace (a typo would look like lost data); the message
    names ``modelyard init`` and ``create=True``.
    """

    code = "workspace_not_found"
    status = 404


class ConflictError(ModelyardError, RuntimeError):
    code = "conflict"
    status = 409


class ReleaseBlockedError(ModelyardError, RuntimeError):
    """A release gate failed, so the release did not start; ``failed`` names the gates."""

    code = "release_blocked"
    status = 409

    def __init__(self, message: str, failed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failed = tuple(failed)


class BackendUnavailableError(ModelyardError, ConnectionError):
    code = "backend_unavailable"
    status = 503


class OnlineStoreUnavailableError(BackendUnavailableError):
    """The online feature store did not answer (down, or no reply within its timeout)."""

    code = "online_store_unavailable"
    status = 503


class OnlineStoreMissingError(OnlineStoreUnavailableError):
    """A configured online store file does not exist: nothing was ever written there.

    To a reader of feature values it is unavailable like a store that is down (a wrong
    ``online.url`` must not answer "missing" for every key); a watermark read treats it
    as a store that holds nothing yet.
    """


class NotReadyError(ModelyardError, RuntimeError):
    """A model (or the server) is still loading; retrying shortly succeeds."""

    code = "not_ready"
    status = 503


class PredictionLogUnavailableError(ModelyardError, OSError):
    """The prediction log cannot record an answer (full disk, a failed writer), so the
    server does not give it; retrying on another replica, or later, succeeds."""

    code = "prediction_log_unavailable"
    status = 503


class TaskError(ModelyardError, RuntimeError):
    """A task on an executor raised, timed out or lost its worker; ``task`` names it.

    ``traceback`` is the task's own traceback (text: it happened in another process);
    ``__cause__`` is the task's exception itself when it survived the trip back.
    """

    code = "task_failed"
    status = 500

    def __init__(
        self, task: str, reason: str, *, timed_out: bool = False, traceback: str = ""
    ) -> None:
        super().__init__(f"task {task!r} {'timed out' if timed_out else 'failed'}: {reason}")
        self.task = task
        self.reason = reason
        self.timed_out = timed_out
        self.traceback = traceback


class DeadlineExceededError(ModelyardError, TimeoutError):
    code = "timeout"
    status = 504


class RequestTimeoutError(ModelyardError, TimeoutError):
    """The client did not send its whole request in time (a stalled body): the server
    answers 408 and closes the connection, since the rest of the body may still come."""

    code = "request_timeout"
    status = 408
    headers: ClassVar[dict[str, str]] = {"Connection": "close"}


class OverloadedError(ModelyardError, RuntimeError):
    """More requests wait for a model than its queue holds: retry after ``Retry-After``."""

    code = "overloaded"
    status = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class IntegrityError(ModelyardError, RuntimeError):
    """Stored data does not match its recorded digest: the store was tampered with or torn."""

    code = "integrity_error"
    status = 500
