"""How many requests each model holds, and refusing the one past its ``max_queue``.

A request is counted from the moment the server admits it to the moment its answer is
sent, so the count covers the wait no queue of ours shows: a model called on the event
loop keeps no queue, and under overload its requests wait as tasks the loop has not run
yet. Only a request routed to a variant other than the champion (a canary or shadow
candidate) leaves the count when it is routed: its variant's own queue counts it from
there, so a slow candidate fills its own queue, not its champion's.

The HTTP protocol (``_protocol.py``) admits a request as soon as its headers are in and
answers a refusal itself, from bytes made here, without a task, an ASGI call or reading
the body: at twice a server's capacity, half of what arrives is refused, and a refusal
that cost as much as an answer would halve the answers. An app driven another way (a test
client, another server) admits at the top of ``FastPath``, which answers the same 503
``overloaded`` with ``Retry-After``. Refusals are counted (``on_refused``), not logged.

Written by hand: uvicorn's ``limit_concurrency`` counts every request of the process
together and answers in text; this is per model, and answers in our error shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from modelyard.errors import OverloadedError

# Set in the ASGI scope by the protocol once it has counted the request.
ADMITTED = "modelyard.admitted"

# The admission of the app this process serves (``serving/_fast.py`` ``asgi_entry``), for
# the protocol, which sees requests before the app does.
serving: Admission | None = None


class Admission:
    """Requests held per model name; ``limits`` by name (names not in it are not counted).

    ``on_refused(name)`` counts each refusal.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = dict(limits)
        self.held = dict.fromkeys(self.limits, 0)
        self.on_refused = on_refused

    def enter(self, name: str) -> bool:
        """Count one more request for ``name``; False (and not counted) past its limit."""
        held = self.held.get(name)
        if held is None:
            return True
        if held >= self.limits[name]:
            return False
        self.held[name] = held + 1
        return True

    def leave(self, name: str) -> None:
        held = self.held.get(name)
        if held:
            self.held[name] = held - 1

    def refusal(self, name: str, oip: bool, request_id: str) -> bytes:
        """The JSON body of a refused request (our one error shape; OIP adds ``error``),
        counted as refused."""
        if self.on_refused is not None:
            self.on_refused(name)
        limit = self.limits.get(name, 0)
        error = OverloadedError(
            f"model '{name}' already holds {limit} requests, its limit (max_queue {limit}); "
            "retry after a second, or add replicas"
        )
        extra = {"error": error.message} if oip else {}
        return orjson.dumps({**error.to_dict(), **extra, "request_id": request_id})


def admit(scope: dict[str, Any]) -> str | None:
    """Count a prediction request as its headers come in (the protocol calls this): the
    name of its model when that model refused it (not counted then), else None."""
    admission = serving
    if admission is None or ADMITTED in scope or scope.get("method") != "POST":
        return None
    name = model_of(scope["path"])
    if name is None or name not in admission.limits:
        return None
    admitted = scope[ADMITTED] = admission.enter(name)
    return None if admitted else name


def prediction_path(path: str) -> tuple[bool, dict[str, str]] | None:
    """(is OIP, path parameters) of a prediction path: ``/v1/models/NAME/predict``, or OIP's
    ``/v2/models/NAME[/versions/V]/infer``; None for any other path. The one parser of
    these paths: the protocol counts by it and the fast path routes by it."""
    if path.startswith("/v1/models/") and path.endswith("/predict"):
        name = path[11:-8]
        return (False, {"name": name}) if name and "/" not in name else None
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[11:-6].split("/")
        if len(parts) == 1 and parts[0]:
            return True, {"name": parts[0]}
        if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
            return True, {"name": parts[0], "version": parts[2]}
    return None


def model_of(path: str) -> str | None:
    """The model a prediction path names."""
    found = prediction_path(path)
    return None if found is None else found[1]["name"]
