"""Request ids that no two requests share, whatever the clients send.

Labels join predictions by request id (``POST /v1/feedback``, the prediction log), so a
client that reuses an id, by mistake or on purpose, must not file its request under
another request's id. ``RequestIds.assign`` is the one policy for every door of a server
(REST, OIP, gRPC), on the ids of that server (``ids_of(app)``):

- A client's id (``X-Request-ID``, an OIP request's ``id``) is kept when it is 1 to 128
  characters of ``A-Z a-z 0-9 . _ : -`` and no request this server took lately had it.
  Any other id is replaced by a server id, not refused: the header is usually added by a
  proxy or tracer the caller does not control, failing the prediction for it would turn
  a cosmetic header into an outage, and the answer always carries the id used.
- A reused id gets ``~`` and 16 random hex digits appended (``req-7~3f0c…``). ``~`` is
  not allowed in a client's id, so a suffixed id can never be sent by a client, and the
  random part keeps two processes from making the same one.
- A server id is 32 random hex digits (128 bits from ``os.urandom``, the form ``uuid4().hex``
  had). Nobody can guess one before it is made; a client that sends back one it was given
  is caught like any reused id.

"Lately" is the last ``window`` to ``2 * window`` ids (100,000 by default): two sets,
swapped when the newer one fills, cost a set lookup per request where an ordered structure
would need upkeep (about 0.3 us per request in all; ``uuid4()`` alone took 1.4 us).

The memory is per server (one app; one per process in ``modelyard serve``), not per
process: tests and embedders run several apps in one process, each with its own
prediction log, and reuse ids between them. So with ``--workers N`` a client id sent to
two workers is kept by both, and one reused after the window is kept again; ids the
server makes never collide.
"""

from __future__ import annotations

import os
import re

__all__ = ["RequestIds", "ids_of", "new_id"]

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}").fullmatch
_BATCH = 256  # server ids drawn per os.urandom call: one system call per 256 requests
_spare: list[str] = []
os.register_at_fork(after_in_child=_spare.clear)  # a child must not hand out its parent's


def new_id() -> str:
    """A new server id: 32 random hex digits."""
    if not _spare:
        digits = os.urandom(16 * _BATCH).hex()
        _spare.extend(digits[i : i + 32] for i in range(0, len(digits), 32))
    return _spare.pop()


def is_client_id(given: str) -> bool:
    """Whether a client may name a request ``given`` (1 to 128 of A-Z a-z 0-9 . _ : -)."""
    return _CLIENT_ID(given) is not None


class RequestIds:
    """The ids one server gave out lately, and the policy (see the module docstring)."""

    def __init__(self, window: int = 100_000) -> None:
        self.window = window
        self._newer: set[str] = set()
        self._older: set[str] = set()

    def assign(self, given: str | None) -> str:
        """The id for a request whose client sent ``given`` (None or "" when it sent none)."""
        if given:
            if given in self._newer or given in self._older:
                return f"{given}~{os.urandom(8).hex()}"  # not kept: clients cannot send '~'
            if _CLIENT_ID(given) is None:
                given = None
        rid = given or new_id()
        newer = self._newer
        newer.add(rid)
        if len(newer) >= self.window:
            self._older, self._newer = newer, set()
        return rid


_ATTRIBUTE = "_modelyard_request_ids"
_NO_APP = RequestIds()


def ids_of(app: object) -> RequestIds:
    """The request ids of the server ``app`` is (made on first use): every door of one
    server (its routes, the fast path, gRPC) must assign from the same ones."""
    ids: RequestIds | None = getattr(app, _ATTRIBUTE, None)
    if ids is None:
        ids = RequestIds()
        try:
            # An attribute of the app, not app.state: State's lookups are Python calls.
            setattr(app, _ATTRIBUTE, ids)
        except AttributeError:  # None, or an object that takes no attributes
            return _NO_APP
    return ids
