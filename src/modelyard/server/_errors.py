"""MLflow's error shape, so the MLflow client raises the exceptions it expects.

MLflow answers ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "…"}`` with the
HTTP status its client maps back to the code (``mlflow.exceptions``); the client's own
logic depends on it (``set_experiment`` creates the experiment on a 404 from
get-by-name). modelyard's errors map onto those codes here, and every answer carries the
``request_id`` as well.
"""

from __future__ import annotations

from modelyard.errors import (
    BackendUnavailableError,
    ConflictError,
    ForbiddenError,
    IntegrityError,
    InvalidInputError,
    ModelyardError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
)

STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
}


class MlflowError(Exception):
    """An answer in MLflow's error shape: ``code`` is one of ``STATUS``'s keys."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS[self.code]


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def exists(message: str) -> MlflowError:
    return MlflowError("RESOURCE_ALREADY_EXISTS", message)


_CODES: tuple[tuple[type[ModelyardError], str], ...] = (
    (NotFoundError, "RESOURCE_DOES_NOT_EXIST"),
    (UnauthenticatedError, "UNAUTHENTICATED"),
    (ForbiddenError, "PERMISSION_DENIED"),
    (RateLimitedError, "REQUEST_LIMIT_EXCEEDED"),
    (BackendUnavailableError, "TEMPORARILY_UNAVAILABLE"),
    (IntegrityError, "INTERNAL_ERROR"),
    (ConflictError, "INVALID_PARAMETER_VALUE"),
    (InvalidInputError, "INVALID_PARAMETER_VALUE"),
)


def as_mlflow(exc: ModelyardError) -> MlflowError:
    if type(exc) is ModelyardError:  # the server's own failure
        return MlflowError("INTERNAL_ERROR", exc.message)
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return MlflowError(code, exc.message)
    return MlflowError("BAD_REQUEST", exc.message)
