"""Who may call which route: one rule per HTTP route and gRPC method, checked in one place.

``RULES`` gives every route of the server a ``Permission`` (``security/_roles.py`` says
which roles hold it); ``check_routes`` refuses to build an app with a route that has no
rule, so a new route cannot ship open by accident. ``Guard`` runs before any route:
from ``FastPath`` for HTTP and from ``grpc_interceptor`` for gRPC.

Three checks hold with auth off too (a server on loopback, or ``--insecure-no-auth``),
because a web page in the user's own browser can reach a loopback server: a POST that
carries an ``Origin`` other than the server's own is refused (a browser adds ``Origin``
to every cross-site POST; curl and client libraries send none), a route that changes
state (``mutating``) takes only ``application/json``, which no cross-site form can send,
and a request that came in on a loopback address must be addressed to a loopback name
(DNS rebinding: a page whose own name resolves to 127.0.0.1 is same-origin there).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import cookie_parser

from modelyard._redact import redact
from modelyard.errors import (
    BackendUnavailableError,
    ForbiddenError,
    ModelyardError,
    UnauthenticatedError,
    UnsupportedMediaTypeError,
)
from modelyard.security import COOKIE, Actor, ApiKey, KeyRing, Permission, Sessions, bearer
from modelyard.serving._metrics import ServerMetrics

logger = logging.getLogger("modelyard.serving")

Scope = MutableMapping[str, Any]
KEY = "modelyard.key"  # the request's checked key, in the ASGI scope
SESSION = "modelyard.session"  # the dashboard session cookie it came with, if any


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
    # Feature lookups: the role that predicts reads features too. A key limited to some
    # models reads only services they are bound to (``_features_route.py`` checks it).
    _rule("GET POST", r"/v1/features/[^/]+", "predict"),
    # The recommendations blueprint's read API; a key limited to some models reads only
    # their lists (``_recommendations_route.py`` checks it).
    _rule("GET", r"/v1/recommendations/[^/]+", "predict"),
    _rule("POST", rf"/v1/models/{_MODEL}/rollback", "admin", mutating=True),
    # The dashboard (mounted by ``modelyard serve`` unless --no-ui): a browser signs in
    # with a key and then sends a session cookie; forms that act carry a CSRF token that
    # the route checks, so they are not JSON-only like the API's mutating routes.
    _rule("GET HEAD", r"/", "public"),  # a redirect to /ui
    _rule("GET HEAD", r"/ui/static/.*", "public"),
    _rule("GET HEAD POST", r"/ui/sign-in", "public"),
    _rule("POST", r"/ui/sign-out", "public"),
    _rule("POST", r"/ui/actions/.*", "admin"),
    _rule("GET HEAD", r"/ui(?:/.*)?", "read"),
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


def needs_key(method: str, template: str) -> bool:
    """Whether a route (its OpenAPI path template) needs a key when auth is on."""
    rule = rule_for(method, re.sub(r"\{[^}]+\}", "x", template))
    return rule is None or rule.permission != "public"


def check_routes(routes: Iterable[Any]) -> None:
    """Refuse an app with a route that no rule covers (a route added without deciding who
    may call it). A path parameter is tried with a sample value."""
    for route in _flat(routes):
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        methods = getattr(route, "methods", None) or {"GET"}
        if getattr(route, "methods", None) is None:  # a mounted app (static files)
            path += "/x"
        for method in methods:
            if rule_for(method, path) is None:
                raise RuntimeError(
                    f"route {method} {route.path} has no rule in serving/_auth.py RULES; "
                    "add one saying which permission it needs"
                )


def _flat(routes: Iterable[Any]) -> Iterable[Any]:
    """Every route, those of included routers too (FastAPI 0.165 keeps a router that is
    included as one entry of ``app.routes``; ``iter_route_contexts`` walks into it)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # before 0.165 included routes are copied into app.routes
        return routes
    return iter_route_contexts(list(routes))


_WANTED = (b"authorization", b"origin", b"host", b"content-type", b"cookie")


def _headers(scope: Scope, keyed: bool) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        if key in _WANTED:
            if keyed and key == b"authorization" and key in found:  # which is the key?
                raise UnauthenticatedError(
                    "the request has two Authorization headers; send exactly one", "malformed"
                )
            found[key] = value
    return found


class Guard:
    """Checks a request's key, role, origin, host and media type before any route runs.

    ``ring`` is None when auth is off; the origin, loopback-host and media-type checks
    still run.
    """

    def __init__(self, ring: KeyRing | None, metrics: ServerMetrics, refresh_s: float) -> None:
        self.ring = ring
        self.metrics = metrics
        self.refresh_s = refresh_s
        self._reloading: asyncio.Future[None] | None = None
        # Set by the dashboard when it is mounted: /ui takes a signed-in session cookie
        # where the API takes an Authorization header.
        self.sessions: Sessions | None = None

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
        headers = _headers(scope, self.ring is not None)
        if scope["method"] == "POST":
            _same_origin(headers)
        if rule is not None and rule.mutating:
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind != b"application/json":
                raise _not_json(kind)
        if rule is not None and rule.permission == "public":
            return None
        if self.ring is None:
            _addressed_to_loopback(scope, headers)
            return None
        raw = headers.get(b"authorization")
        session = self._session(scope, headers) if raw is None else None
        if session is not None:
            key = await self.session_key(session)
            scope[SESSION] = session
        else:
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
            try:
                await self._reload(wait)
            except Exception as exc:  # the store is down: this key cannot be checked now
                raise BackendUnavailableError(
                    f"cannot check this API key now: the metadata store does not answer "
                    f"({_reason(exc)}); retry shortly"
                ) from None
        return self.ring.check(presented)

    def _session(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        cookies = headers.get(b"cookie")
        if self.sessions is None or cookies is None or not scope["path"].startswith("/ui"):
            return None
        return cookie_parser(cookies.decode("latin-1")).get(COOKIE) or None

    async def session_key(self, session: str) -> ApiKey:
        """The key a dashboard session names (reloading once for a key not seen yet)."""
        assert self.ring is not None and self.sessions is not None
        key_id, issued = self.sessions.key_id(session)
        wait = self.ring.reload_wait_for(key_id)
        if wait is not None:  # a key made a moment ago (signed in on another replica)
            try:
                await self._reload(wait)
            except Exception:
                pass  # by_id says the key is not known: the person signs in again
        return self.ring.by_session(key_id, issued)

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
        down = False
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._reload()
            except Exception as exc:  # a store that is down keeps the keys last read
                if not down:  # once per outage, not once a second
                    logger.warning(
                        "cannot reload API keys (%s); keeping the ones read before until "
                        "the metadata store answers",
                        _reason(exc),
                    )
                down = True
                continue
            if down:
                logger.info("API keys reloaded: the metadata store answers again")
            down = False


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(text.strip().splitlines()[0])


def actor(key: ApiKey | None, scope: Scope) -> Actor:
    """Who acts in a request (the audit log's actor): its key and its client's address."""
    client = scope.get("client")
    source = f"{client[0]}:{client[1]}" if client else "unknown"
    if key is None:
        return Actor(name="anonymous (auth off)", source=source)
    return Actor(name=key.name, source=source, key_id=key.key_id)


def request_key(scope: Scope) -> ApiKey | None:
    """The key a request was let in with (None: auth off, or a public route)."""
    key: ApiKey | None = scope.get(KEY)
    return key


def request_session(scope: Scope) -> str:
    """The dashboard session cookie a request was let in with ("" if none)."""
    return str(scope.get(SESSION, ""))


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


def _addressed_to_loopback(scope: Scope, headers: dict[bytes, bytes]) -> None:
    """With keys off, a request that came in on a loopback address must name a loopback
    host: a web page whose name the attacker points at 127.0.0.1 (DNS rebinding) sends
    its own name, and would otherwise read and drive the server from the browser."""
    server = scope.get("server")
    if not server or not _is_loopback(str(server[0])):
        return
    name = _loopback_name(headers.get(b"host", b""))
    if name is None:
        return
    raise ForbiddenError(
        f"this server runs without API keys, so it answers only requests addressed to "
        f"localhost or 127.0.0.1, not {name!r} (a web page could reach it by that name); "
        "call it as localhost, or turn keys on (serve --require-auth)",
        "host_not_allowed",
    )


@functools.lru_cache(maxsize=256)  # a client sends one Host again and again
def _loopback_name(raw: bytes) -> str | None:
    """None when the Host header names a loopback host, else the name it gives."""
    host = raw.decode("latin-1")
    name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost") or _is_loopback(name):
        return None
    return name


@functools.lru_cache(maxsize=256)
def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
    "needs_key",
    "rule_for",
]
