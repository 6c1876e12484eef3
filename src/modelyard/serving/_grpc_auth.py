"""The gRPC side of ``_auth.py``: one interceptor checks every RPC's key and role.

The key comes in the ``authorization`` metadata (``Bearer KEY``, as over HTTP). An
interceptor sees the method but not the request, so for an RPC about one model
(``GRPC_RULES`` names the request field) it wraps the method's handler, which checks
the model once the request is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from modelyard.errors import ModelyardError
from modelyard.security import ApiKey
from modelyard.serving._auth import GRPC_RULES, Guard

_CODES = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _code(exc: ModelyardError) -> grpc.StatusCode:
    return _CODES.get(exc.status, grpc.StatusCode.PERMISSION_DENIED)


def _refusal(exc: ModelyardError) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: Any) -> None:
        await context.abort(_code(exc), exc.message)

    return grpc.unary_unary_rpc_method_handler(refuse)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        details: Any,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        guard = self.guard
        if handler is None or guard.ring is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        # A method without a rule (a service added later) needs admin: closed by default.
        permission, field = GRPC_RULES.get(method, ("admin", None))
        if permission == "public":
            return handler
        meta = dict(details.invocation_metadata or ())
        try:
            key = await guard.key(meta.get("authorization"))
            if field is None:
                guard.ring.permit(key, permission, None, method)
        except ModelyardError as exc:
            guard.refused(exc, "grpc")
            return _refusal(exc)
        if field is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _checked(guard, key, permission, field, method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _checked(
    guard: Guard,
    key: ApiKey,
    permission: Any,
    field: str,
    method: str,
    inner: Callable[[Any, Any], Awaitable[Any]],
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def checked(request: Any, context: Any) -> Any:
        assert guard.ring is not None
        try:
            guard.ring.permit(key, permission, getattr(request, field), method)
        except ModelyardError as exc:
            guard.refused(exc, "grpc")
            await context.abort(
                _CODES.get(exc.status, grpc.StatusCode.PERMISSION_DENIED), exc.message
            )
        return await inner(request, context)

    return checked
