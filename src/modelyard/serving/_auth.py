"""Who may call which route: one rule per HTTP route and gRPC method, checked in one place.

``RULES`` gives every route of the server a ``Permission`` (``security/_roles.py`` says
which roles hold it); ``check_routes`` refuses to build an app with a route that has no
rule, so a new route cannot ship open by accident. ``Guard`` runs before any route:
from ``FastPath`` for HTTP and from ``grpc_interceptor`` for gRPC.

Two checks hold with auth off too (a server on loopback, or ``--insecure-no-auth``),
because a web page in the user's own browser can reach a loopback server: a POST that
carries an ``Origin`` other than the server's own is refused (a browser adds ``Origin``
to every cross-site POST; curl and client libraries send none), and a route that changes
state (``mutating``) takes only ``application/json``, which no cross-site form can send.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelyard.errors import ForbiddenError, ModelyardError, UnsupportedMediaTypeError
from modelyard.security import Actor, ApiKey, KeyRing, Permission, bearer
from modelyard.serving._metrics import ServerMetrics

logger = logging.getLogger("modelyard.serving")

Scope = MutableMapping[str, Any]
KEY = "modelyard.key"  # the request's checked key, in the ASGI scope


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    permission: Permission
    mutating: bool = False  # changes state: JSON bodies only

    def model(self, path: str) -> str | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict().get("model")


def _rule(methods: str, pattern: str, permission: Permission, mutating: bool = False) -> Rule:
    return Rule(frozenset(methods.split()), re.compile(pattern), permission, mutating)


_MODEL = r"(?P<model>[^/]+)"
_VERSION = r"(?:/versions/[^/]+)?"
RULES: tuple[Rule, ...] = (
    _rule("GET HEAD", r"/healthz", "public"),
    _rule("GET HEAD", r"/readyz", "public"),
    _rule("GET HEAD", r"/v2/health/live", "public"),
    _rule("GET HEAD", r"/v2/health/ready", "public"),
    # The docs pages are code without data; the schema they show (/openapi.json) is not.
    _rule("GET HEAD", r"/docs", "public"),
    _rule("GET HEAD", r"/docs/oauth2-redirect", "public"),
    _rule("GET HEAD", r"/docs/static/.*", "public"),
    _rule("GET HEAD", r"/redoc", "public"),
    _rule("GET HEAD", r"/openapi\.json", "read"),
    _rule("GET HEAD", r"/metrics", "read"),
    _rule("GET HEAD", r"/v1/models", "read"),
    _rule("GET HEAD", r"/v2", "read"),
    _rule("GET HEAD", rf"/v2/models/{_MODEL}{_VERSION}(?:/ready)?", "model"),
    _rule("POST", rf"/v1/models/{_MODEL}/predict", "predict"),
    _rule("POST", rf"/v2/models/{_MODEL}{_VERSION}/infer", "predict"),
    # Which models a label is for is known once its request ids are looked up: the
    # route itself refuses labels for models the key does not cover (``may_label``).
    _rule("POST", r"/v1/feedback", "predict", mutating=True),
    _rule("POST", rf"/v1/models/{_MODEL}/rollback", "admin", mutating=True),
)
_META = set("()[]*+?")
_EXACT = {
    (method, rule.pattern.pattern.replace("\\.", ".")): rule
    for rule in RULES
    if not _META & set(rule.pattern.pattern)
    for method in rule.methods
}
# The fast routes' rule: predict and infer need the same permission.
PREDICT = next(r for r in RULES if r.permission == "predict" and not r.mutating)
# gRPC methods of inference.GRPCInferenceService: (permission, request field naming the model)
GRPC_RULES: dict[str, tuple[Permission, str | None]] = {
    "ServerLive": ("public", None),
    "ServerReady": ("public", None),
    "ServerMetadata": ("read", None),
    "ModelReady": ("model", "name"),
    "ModelMetadata": ("model", "name"),
    "ModelInfer": ("predict", "model_name"),
}


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a request, or None for a path no route serves."""
    rule = _EXACT.get((method, path))
    if rule is not None:
        return rule
    for rule in RULES:
        if method in rule.methods and rule.pattern.fullmatch(path):
            return rule
    return None


def check_routes(routes: Iterable[Any]) -> None:
    """Refuse an app with a route that no rule covers (a route added without deciding who
    may call it). A path parameter is tried with a sample value."""
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        methods = getattr(route, "methods", None) or {"GET"}
        if not hasattr(route, "methods"):  # a mounted app (the docs' static files)
            path += "/x"
        for method in methods:
            if rule_for(method, path) is None:
                raise RuntimeError(
                    f"route {method} {route.path} has no rule in serving/_auth.py RULES; "
                    "add one saying which permission it needs"
                )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    wanted = (b"authorization", b"origin", b"host", b"content-type")
    return {k: v for k, v in scope["headers"] if k in wanted}


class Guard:
    """Checks a request's key, role, origin and media type before any route runs.

    ``ring`` is None when auth is off; the origin and media-type checks still run.
    """

    def __init__(self, ring: KeyRing | None, metrics: ServerMetrics, refresh_s: float) -> None:
        self.ring = ring
        self.metrics = metrics
        self.refresh_s = refresh_s
        self._reloading: asyncio.Future[None] | None = None

    @property
    def on(self) -> bool:
        return self.ring is not None

    async def check(
        self, scope: Scope, rule: Rule | None, model: str | None, protocol: str = "http"
    ) -> ApiKey | None:
        """The request's key (None with auth off or a public route); raises 401/403/415/429.

        ``rule`` None: a path no route serves; any valid key may learn that it is a 404.
        """
        try:
            return await self._check(scope, rule, model)
        except ModelyardError as exc:
            self.refused(exc, protocol)
            raise

    def refused(self, exc: ModelyardError, protocol: str) -> None:
        """Count a refusal by its reason (never by key)."""
        self.metrics.auth_refusals.labels(getattr(exc, "reason", exc.code), protocol).inc()

    async def _check(self, scope: Scope, rule: Rule | None, model: str | None) -> ApiKey | None:
        headers = _headers(scope)
        if scope["method"] == "POST":
            _same_origin(headers)
        if rule is not None and rule.mutating:
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind != b"application/json":
                raise _not_json(kind)
        if self.ring is None or (rule is not None and rule.permission == "public"):
            return None
        raw = headers.get(b"authorization")
        key = await self.key(None if raw is None else raw.decode("latin-1"))
        if rule is not None:
            what = f"{scope['method']} {scope['path']}"
            self.ring.permit(key, rule.permission, model, what)
        scope[KEY] = key
        return key

    async def key(self, authorization: str | None) -> ApiKey:
        """The key of an ``Authorization`` value; a key id not seen yet reloads the keys."""
        assert self.ring is not None
        presented = bearer(authorization)
        wait = self.ring.reload_wait(presented)
        if wait is not None:
            await self._reload(wait)
        return self.ring.check(presented)

    async def _reload(self, wait: float = 0.0) -> None:
        # One reload at a time, shared by every request that waits for it; one that
        # starts after it is scheduled sees a key created until then.
        if self._reloading is None:
            self._reloading = asyncio.ensure_future(self._refresh_after(wait))
            self._reloading.add_done_callback(lambda _: setattr(self, "_reloading", None))
        await asyncio.shield(self._reloading)

    async def _refresh_after(self, wait: float) -> None:
        assert self.ring is not None
        if wait > 0:
            await asyncio.sleep(wait)
        await asyncio.to_thread(self.ring.refresh)

    async def follow_keys(self) -> None:
        """Reload every key each ``refresh_s`` (revocations reach this server so)."""
        if self.ring is None:
            return
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._reload()
            except Exception:  # a store that is down keeps the keys last read
                logger.warning("cannot reload API keys; keeping the ones read before")


def actor(key: ApiKey | None, scope: Scope) -> Actor:
    """Who acts in a request (the audit log's actor): its key and its client's address."""
    client = scope.get("client")
    source = f"{client[0]}:{client[1]}" if client else "unknown"
    if key is None:
        return Actor(name="anonymous (auth off)", source=source)
    return Actor(name=key.name, source=source, key_id=key.key_id)


def may_label(scope: Scope, model: str) -> bool:
    """The request's key covers ``model`` (feedback for another model's predictions)."""
    key: ApiKey | None = scope.get(KEY)
    return key is None or key.role == "admin" or key.covers(model)


def _same_origin(headers: dict[bytes, bytes]) -> None:
    origin = headers.get(b"origin")
    if origin is None:
        return
    text = origin.decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    if text == "null" or urlsplit(text).netloc != host:
        raise ForbiddenError(
            f"a POST from the web page at {text} to this server is refused (cross-site); "
            "call the API from a server or a client library, which send no Origin header",
            "cross_origin",
        )


def _not_json(kind: bytes) -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError(
        f"this route takes application/json, not {kind.decode('latin-1') or 'no content type'}; "
        "send the header 'Content-Type: application/json'"
    )


__all__ = [
    "GRPC_RULES",
    "KEY",
    "PREDICT",
    "RULES",
    "Guard",
    "Rule",
    "actor",
    "check_routes",
    "may_label",
    "rule_for",
]
