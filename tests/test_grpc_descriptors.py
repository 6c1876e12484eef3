"""The server's gRPC descriptors are made at build time, from the .proto, by protoc."""

from __future__ import annotations

import grpc_tools  # noqa: F401  (the test extra's proto compiler; a missing one fails here)
from google.protobuf import descriptor_pb2

from modelyard.serving._grpc import messages
from proto_support import GENERATED, descriptor_set, render


def test_committed_descriptors_are_what_protoc_makes_of_the_proto() -> None:
    fresh = render(descriptor_set())

    assert GENERATED.read_text() == fresh, (
        f"{GENERATED.name} is stale: run 'python tests/proto_support.py' and commit it"
    )


def test_every_message_of_the_service_is_built_from_them() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set())
    names = {m.name for m in fds.file[-1].message_type}

    built = messages()

    assert set(built) == names
    request = built["ModelInferRequest"](model_name="m", id="r1")
    parsed = built["ModelInferRequest"].FromString(request.SerializeToString())
    assert (parsed.model_name, parsed.id) == ("m", "r1")
