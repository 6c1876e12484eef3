"""Open Inference Protocol v2 over gRPC: ``inference.GRPCInferenceService`` (grpc.aio).

The messages come from the descriptors that protoc made of ``protos/oip_v2.proto`` at
build time (``_oip_v2_descriptor.py``; serving needs no grpcio-tools), loaded into a
private descriptor pool, so a client library in the same process that registers the
same ``inference.*`` names (tritonclient does) does not collide with ours. It runs on
the server's event loop, so gRPC and REST requests share one batcher per model.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from modelyard.errors import ConfigError, ModelyardError
from modelyard.serving._auth import Guard
from modelyard.serving._deployment import Inference
from modelyard.serving._grpc_auth import AuthInterceptor
from modelyard.serving._limits import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_STRING_LENGTH
from modelyard.serving._oip import check_version, model_metadata, server_metadata
from modelyard.serving._oip_v2_descriptor import DESCRIPTOR_SET
from modelyard.serving._pool import ModelPool
from modelyard.serving._request_ids import RequestIds
from modelyard.serving._tensors import NUMPY_OF, Tensor, from_columns, from_raw, to_columns, to_raw

if TYPE_CHECKING:
    from modelyard.serving._health import Readiness

SERVICE = "inference.GRPCInferenceService"
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@functools.cache
def messages() -> dict[str, Any]:
    """Message classes by short name, from the build-time descriptors, in a private pool."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET)
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    found: dict[str, Any] = {}
    package = pool.FindFileByName(fds.file[-1].name).package
    for name in pool.FindFileByName(fds.file[-1].name).message_types_by_name:
        found[name] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{package}.{name}")
        )
    return found


def _tensors(request: Any) -> list[Tensor]:
    out = []
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ModelyardError("raw_input_contents must hold one entry per input")
    for i, spec in enumerate(request.inputs):
        shape = [int(s) for s in spec.shape]
        if raw:
            out.append(from_raw(spec.name, spec.datatype, shape, raw[i]))
            continue
        field = _CONTENTS_FIELD.get(spec.datatype)
        if field is None:
            out.append(from_raw(spec.name, spec.datatype, shape, b""))  # raises: unsupported
            continue
        values = list(getattr(spec.contents, field))
        if spec.datatype == "BYTES":
            array: np.ndarray[Any, Any] = np.array([v.decode() for v in values], dtype=object)
        else:
            array = np.asarray(values, dtype=NUMPY_OF[spec.datatype])
        out.append(Tensor(spec.name, spec.datatype, shape, array.reshape(shape)))
    return out


class InferenceService:
    """The six OIP v2 RPCs, over the server's ``ModelPool``.

    ``ServerReady`` answers what ``/readyz`` and ``/v2/health/ready`` answer (the same
    ``Readiness``: models, prediction log, back-end checks), so a gRPC load balancer
    drains a replica exactly when an HTTP one would.
    """

    def __init__(
        self,
        pool: ModelPool,
        ready: Callable[[], bool],
        readiness: Readiness,
        ids: RequestIds,
        max_rows: int = DEFAULT_MAX_BATCH_ROWS,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    ) -> None:
        self.pool = pool
        self.ready = ready
        self.readiness = readiness
        self.ids = ids  # the HTTP routes' own: one server, one set of request ids
        self.max_rows = max_rows
        self.max_string_length = max_string_length
        self.m = messages()

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC names)
        return self.m["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        code, _ = await self.readiness.evaluate(self.ready())
        return self.m["ServerReadyResponse"](ready=code == 200)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        d = await self._guard(context, self.pool.get, request.name)
        await self._guard(context, check_version, d, request.version)
        return self.m["ModelReadyResponse"](ready=self.ready() and d.champion.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.m["ServerMetadataResponse"](**server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        d = await self._guard(context, self.pool.get, request.name)
        await self._guard(context, check_version, d, request.version)
        return self.m["ModelMetadataResponse"](**model_metadata(d))

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        started = time.perf_counter()
        meta = dict(context.invocation_metadata() or ())
        rid = self.ids.assign(meta.get("x-request-id") or request.id or None)
        done = self.pool.observe(request.model_name, "grpc")
        status = 200
        result: Inference | None = None
        try:
            d = self.pool.get(request.model_name)
            check_version(d, request.model_version)
            served = d.served
            columns, rows = to_columns(
                served.request_schema,
                served.validator,
                _tensors(request),
                max_rows=self.max_rows,
                max_string_length=self.max_string_length,
                tensor_inputs=served.tensor_inputs,
            )
            result = await d.infer(columns, rows, rid)
            wanted = [o.name for o in request.outputs] or None
            response = self.m["ModelInferResponse"](
                model_name=d.name, model_version=str(result.version), id=request.id
            )
            response.parameters["variant"].string_param = result.variant
            response.parameters["request_id"].string_param = rid
            for tensor in from_columns(
                result.outputs, wanted, served.model.version.signature.outputs
            ):
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                response.raw_output_contents.append(to_raw(tensor))
            return response
        except ModelyardError as exc:
            status = exc.status
            await context.abort(
                _STATUS.get(exc.status, grpc.StatusCode.INTERNAL),
                f"{exc.message} (request_id {rid})",
            )
        except Exception:
            status = 500
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"model '{request.model_name}' failed on this input; "
                f"see the server log for request_id {rid}",
            )
        finally:
            done(rid, status, result, started)

    async def _guard(self, context: Any, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except ModelyardError as exc:
            await context.abort(_STATUS.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)


def _handler(service: InferenceService) -> grpc.GenericRpcHandler:
    m = service.m
    rpcs: dict[str, tuple[str, str]] = {
        "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
        "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
        "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
        "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
        "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
        "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
    }
    handlers = {}
    for rpc, (req, resp) in rpcs.items():
        fn: Callable[[Any, Any], Awaitable[Any]] = getattr(service, rpc)
        handlers[rpc] = grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=m[req].FromString,
            response_serializer=m[resp].SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def start_grpc(
    pool: ModelPool,
    host: str,
    port: int,
    max_message_bytes: int,
    ready: Callable[[], bool],
    readiness: Readiness,
    ids: RequestIds,
    max_rpcs: int,
    guard: Guard,
    *,
    tls: tuple[str, str] | None = None,
    max_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
) -> grpc.aio.Server:
    """Start the gRPC service on ``host:port`` (several workers may share the port).

    ``tls`` (certificate and key paths, checked by ``_tls.check_tls``) serves it over TLS.
    """
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(guard)],
        maximum_concurrent_rpcs=max_rpcs,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1),
        ],
    )
    service = InferenceService(pool, ready, readiness, ids, max_rows, max_string_length)
    server.add_generic_rpc_handlers((_handler(service),))
    try:
        if tls is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", _credentials(tls))
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot listen for gRPC on {host}:{port}; pass another --grpc-port")
    await server.start()
    return server


def _credentials(tls: tuple[str, str]) -> grpc.ServerCredentials:
    certfile, keyfile = tls
    with open(certfile, "rb") as cert, open(keyfile, "rb") as key:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])
