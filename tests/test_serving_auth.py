"""API keys and roles on every route, as a client meets them: the role x route matrix over
HTTP (in process) and gRPC (a real server), 401/403/415/429 with our error shape, counted
in /metrics by reason; revocation and new keys seen while serving; the audit log names
the key and address of an admin action; cross-site posts refused with auth off too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from modelyard.security import audit_events, create_key, list_keys, revoke_key
from modelyard.serving import create_app
from modelyard.serving._auth import GRPC_RULES, RULES, rule_for
from registry_support import EXAMPLE, doubler, serving_workspace

pytestmark = pytest.mark.anyio

ROLES = ("admin", "predictor", "predictor_other", "reader")


@dataclass
class Keys:
    by_identity: dict[str, str]

    def headers(self, identity: str) -> dict[str, str]:
        if identity == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.by_identity[identity]}"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelyard.Workspace]:
    root = serving_workspace(tmp_path_factory.mktemp("auth") / "ws", ["iris", "other"], 2)
    ws = modelyard.Workspace(root, environ={})
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture(scope="module")
def keys(ws: modelyard.Workspace) -> Keys:
    made = {
        "admin": create_key(ws.metadata, "admin", name="ops")[1],
        "predictor": create_key(ws.metadata, "predictor", name="app")[1],
        "predictor_other": create_key(ws.metadata, "predictor", models=["other"])[1],
        "reader": create_key(ws.metadata, "reader", name="grafana")[1],
    }
    return Keys(made)


@asynccontextmanager
async def serving(ws: modelyard.Workspace, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    kwargs.setdefault("poll_interval_s", 0)
    app = create_app(
        ws.registry,
        ["iris@production", "other@production"],
        prediction_log=ws.predictions,
        **kwargs,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


# What each identity may do, per permission (security/_roles.py says it once for the code;
# this is the users' promise, written out again so that a loosened grant fails here).
ALLOWED = {
    "public": {"anonymous", *ROLES},
    "read": {"admin", "reader"},
    "model": {"admin", "predictor", "reader"},  # of iris: predictor_other covers only other
    "predict": {"admin", "predictor"},
    "feedback": {"admin", "predictor", "predictor_other"},  # labels are checked per model
    "admin": {"admin"},
}
# One request per route of the app. A route the app gains without a line here fails
# test_every_route_of_the_app_is_in_the_matrix.
CASES: list[tuple[str, str, str, Any]] = [
    ("GET", "/healthz", "public", None),
    ("GET", "/readyz", "public", None),
    ("GET", "/v2/health/live", "public", None),
    ("GET", "/v2/health/ready", "public", None),
    ("GET", "/docs", "public", None),
    ("GET", "/docs/oauth2-redirect", "public", None),
    ("GET", "/docs/static/swagger-ui.css", "public", None),
    ("GET", "/redoc", "public", None),
    ("GET", "/openapi.json", "read", None),
    ("GET", "/metrics", "read", None),
    ("GET", "/v1/models", "read", None),
    ("GET", "/v2", "read", None),
    ("GET", "/v2/models/iris", "model", None),
    ("GET", "/v2/models/iris/versions/2", "model", None),
    ("GET", "/v2/models/iris/ready", "model", None),
    ("GET", "/v2/models/iris/versions/2/ready", "model", None),
    ("POST", "/v1/models/iris/predict", "predict", {"a": 1.0}),
    ("POST", "/v1/models/other/predict", "predict-other", {"a": 1.0}),
    ("POST", "/v2/models/iris/infer", "predict", "oip"),
    ("POST", "/v2/models/iris/versions/2/infer", "predict", "oip"),
    ("POST", "/v1/feedback", "feedback", [{"request_id": "nope", "label": 1.0}]),
    ("POST", "/v1/models/iris/rollback", "admin", {}),
]
_OIP = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]}]}


def _allowed(permission: str) -> set[str]:
    if permission == "predict-other":
        return {"admin", "predictor", "predictor_other"}
    return ALLOWED[permission]


async def _call(client: httpx.AsyncClient, method: str, path: str, body: Any, **kw: Any) -> Any:
    if body == "oip":
        body = _OIP
    if method == "GET":
        return await client.get(path, **kw)
    return await client.post(path, json=body, **kw)


def _template(path: str) -> str:
    for name in ("iris", "other"):
        path = path.replace(f"/{name}/", "/{name}/").removesuffix(f"/{name}")
    return path


async def test_every_route_needs_the_role_the_matrix_gives_it(
    ws: modelyard.Workspace, keys: Keys
) -> None:
    async with serving(ws, auth=True) as client:
        wrong: list[str] = []
        for method, path, permission, body in CASES:
            for identity in ("anonymous", *ROLES):
                r = await _call(client, method, path, body, headers=keys.headers(identity))
                allowed = identity in _allowed(permission)
                refused = r.status_code in (401, 403)
                if allowed == refused:
                    wrong.append(f"{identity} {method} {path}: {r.status_code} {r.text[:120]}")
                if refused:
                    expected = 401 if identity == "anonymous" else 403
                    body_ = r.json()
                    assert r.status_code == expected, (identity, path, body_)
                    assert body_["request_id"] and body_["message"]
                    assert body_["code"] == ("unauthenticated" if expected == 401 else "forbidden")
        assert wrong == []


async def test_every_route_of_the_app_is_in_the_matrix(ws: modelyard.Workspace) -> None:
    async with serving(ws, auth=True) as client:
        app: FastAPI = client.app  # type: ignore[attr-defined]
        covered = {(m, p) for m, p, _, _ in CASES}
        missing = []
        for route in app.routes:
            methods = getattr(route, "methods", None) or {"GET"}
            for method in methods - {"HEAD"}:
                path = route.path if hasattr(route, "methods") else route.path + "/swagger-ui.css"
                concrete = path.replace("{name}", "iris").replace("{version}", "2")
                if (method, concrete) not in covered:
                    missing.append(f"{method} {route.path}")
        assert missing == [], "routes without a line in CASES: " + ", ".join(missing)


def test_a_route_without_a_rule_stops_the_app_from_building(ws: modelyard.Workspace) -> None:
    from modelyard.serving._auth import check_routes

    class Route:
        path = "/v1/secret-admin-thing"
        methods = {"POST"}

    with pytest.raises(RuntimeError, match="/v1/secret-admin-thing has no rule"):
        check_routes([Route()])
    assert rule_for("POST", "/v1/models/x/rollback") is not None
    assert all(rule.permission in ALLOWED for rule in RULES)


def test_every_grpc_method_has_a_rule() -> None:
    from modelyard.serving._grpc import InferenceService

    rpcs = {n for n in dir(InferenceService) if n[0].isupper() and not n.startswith("_")}
    assert rpcs == set(GRPC_RULES)


async def test_refusals_are_counted_by_reason_never_by_key(
    ws: modelyard.Workspace, keys: Keys
) -> None:
    async with serving(ws, auth=True) as client:
        await client.get("/v1/models")
        await client.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        await client.get(
            "/v1/models", headers={"Authorization": "Bearer myd_0123456789ab_" + "x" * 43}
        )
        r = await client.get("/v1/models", headers=keys.headers("predictor"))
        assert r.status_code == 403
        assert "needs role admin or reader" in r.json()["message"]
        r = await client.post(
            "/v1/models/iris/predict", json={"a": 1.0}, headers=keys.headers("predictor_other")
        )
        assert r.status_code == 403 and "models other only" in r.json()["message"]
        r = await client.get("/v1/models")
        assert r.headers["www-authenticate"] == "Bearer"
        text = (await client.get("/metrics", headers=keys.headers("reader"))).text
    counts = {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "modelyard_auth_refusals_total"
    }
    assert counts == {"missing": 2, "malformed": 1, "unknown": 1, "wrong_role": 1, "wrong_model": 1}
    for identity in ROLES:
        secret = keys.by_identity[identity]
        assert secret not in text and secret.split("_")[1] not in text


async def test_a_revoked_key_is_refused_and_a_new_key_works_at_once(
    ws: modelyard.Workspace,
) -> None:
    key, plain = create_key(ws.metadata, "predictor", name="short-lived")
    async with serving(ws, auth=True, poll_interval_s=0.2) as client:
        headers = {"Authorization": f"Bearer {plain}"}
        assert (
            await client.post("/v1/models/iris/predict", json={"a": 1}, headers=headers)
        ).status_code == 200
        revoke_key(ws.metadata, key.key_id)
        deadline = time.monotonic() + 5
        while True:
            r = await client.post("/v1/models/iris/predict", json={"a": 1}, headers=headers)
            if r.status_code == 401 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 401 and "revoked" in r.json()["message"]
        # A key made while the server runs is known on its first request.
        _, fresh = create_key(ws.metadata, "predictor")
        r = await client.post(
            "/v1/models/iris/predict", json={"a": 1}, headers={"Authorization": f"Bearer {fresh}"}
        )
        assert r.status_code == 200, r.text


async def test_an_expired_key_is_refused(ws: modelyard.Workspace) -> None:
    _, plain = create_key(ws.metadata, "reader", expires=timedelta(seconds=1))
    async with serving(ws, auth=True) as client:
        headers = {"Authorization": f"Bearer {plain}"}
        assert (await client.get("/v1/models", headers=headers)).status_code == 200
        await asyncio.sleep(1.1)
        r = await client.get("/v1/models", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["message"]


async def test_a_key_past_its_rate_is_answered_429_with_retry_after(
    ws: modelyard.Workspace,
) -> None:
    _, plain = create_key(ws.metadata, "predictor", rate=2)
    headers = {"Authorization": f"Bearer {plain}"}
    async with serving(ws, auth=True) as client:
        codes = [
            (await client.post("/v1/models/iris/predict", json={"a": 1}, headers=headers))
            for _ in range(5)
        ]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, [r.status_code for r in codes]
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].json()["code"] == "rate_limited"


async def test_a_rollback_is_audited_with_the_key_and_the_client_address(
    ws: modelyard.Workspace, keys: Keys
) -> None:
    admin = next(k for k in list_keys(ws.metadata) if k.name == "ops")
    ws.registry.set_alias("other", "production", 1)
    ws.registry.set_alias("other", "production", 2)
    async with serving(ws, auth=True) as client:
        r = await client.post("/v1/models/other/rollback", json={}, headers=keys.headers("admin"))
    assert r.status_code == 200, r.text
    (event,) = audit_events(ws.metadata, action="alias.rollback", target="other", limit=1)
    assert (event.key_id, event.actor, event.source) == (admin.key_id, "ops", "10.1.2.3:5555")
    assert event.details == {"alias": "production", "version": 1}
    created = audit_events(ws.metadata, action="key.create", target=admin.key_id)
    assert created and created[0].details["role"] == "admin"


@pytest.mark.parametrize("auth", [True, False])
async def test_a_cross_site_post_is_refused_even_without_auth(
    ws: modelyard.Workspace, keys: Keys, auth: bool
) -> None:
    headers = keys.headers("admin")
    async with serving(ws, auth=auth) as client:
        before = ws.registry.get("iris@production").version
        # What a web page can send to a server on the user's own machine: no preflight.
        r = await client.post(
            "/v1/models/iris/rollback",
            content=b"{}",
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
        r = await client.post(
            "/v1/models/iris/predict",
            json={"a": 1.0},
            headers={**headers, "Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "cross-site" in r.json()["message"]
        r = await client.post(
            "/v1/models/iris/rollback",
            json={},
            headers={**headers, "Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        # The server's own pages may post (same origin), and clients send no Origin.
        r = await client.post(
            "/v1/models/iris/predict", json={"a": 1.0}, headers={**headers, "Origin": "http://test"}
        )
        assert r.status_code == 200
    assert ws.registry.get("iris@production").version == before


async def test_with_auth_off_no_key_is_needed(ws: modelyard.Workspace) -> None:
    async with serving(ws, auth=False) as client:
        assert (await client.get("/v1/models")).status_code == 200
        assert (await client.post("/v1/models/iris/predict", json={"a": 1})).status_code == 200


def test_keys_are_stored_only_as_salted_hashes(ws: modelyard.Workspace, keys: Keys) -> None:
    everything = b"".join(p.read_bytes() for p in Path(ws.config.root).rglob("*") if p.is_file())
    for plain in keys.by_identity.values():
        secret = plain.rsplit("_", 1)[-1] if plain.count("_") == 2 else plain.split("_", 2)[2]
        assert secret.encode() not in everything
    stored = list_keys(ws.metadata)
    assert len({k.salt for k in stored}) == len(stored)


async def test_the_openapi_document_says_which_routes_need_a_key(
    ws: modelyard.Workspace, keys: Keys
) -> None:
    async with serving(ws, auth=True) as client:
        document = (await client.get("/openapi.json", headers=keys.headers("reader"))).json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    paths = document["paths"]
    predict = paths["/v1/models/iris/predict"]["post"]
    assert predict["security"] == [{"apiKey": []}]
    assert {"401", "403", "429"} <= set(predict["responses"])
    assert "security" not in paths["/healthz"]["get"]
    assert "415" in paths["/v1/models/{name}/rollback"]["post"]["responses"]


async def test_without_keys_a_loopback_server_answers_only_loopback_names(
    ws: modelyard.Workspace, keys: Keys
) -> None:
    app = create_app(ws.registry, ["iris@production"], poll_interval_s=0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            # A page at evil.example whose name now resolves to 127.0.0.1 (DNS rebinding).
            rebound = {"Host": "evil.example:8000"}
            r = await c.get("/v1/models", headers=rebound)
            assert r.status_code == 403 and "localhost" in r.json()["message"]
            r = await c.post("/v1/models/iris/predict", json={"a": 1.0}, headers=rebound)
            assert r.status_code == 403
            assert (await c.get("/readyz", headers=rebound)).status_code == 200
            for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "app.localhost"):
                r = await c.get("/v1/models", headers={"Host": host})
                assert r.status_code == 200, host


async def test_two_authorization_headers_are_refused(ws: modelyard.Workspace, keys: Keys) -> None:
    async with serving(ws, auth=True) as client:
        both = [
            ("Authorization", keys.headers("reader")["Authorization"]),
            ("Authorization", keys.headers("admin")["Authorization"]),
        ]
        r = await client.get("/v1/models", headers=both)
    assert r.status_code == 401 and "two Authorization headers" in r.json()["message"]


@pytest.mark.postgres
async def test_a_key_store_that_is_down_keeps_known_keys_and_answers_503_for_new_ones(
    pg_url: str, tmp_path: Path
) -> None:
    from fault_proxy import FaultProxy

    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        ws = modelyard.Workspace.init(tmp_path / "pg", environ={}, metadata_url=url)
        try:
            with ws.start_run("train") as run:
                logged = ws.registry.log_model(run, doubler(), input_example=EXAMPLE)
            version = ws.registry.register("iris", logged).version
            ws.registry.set_alias("iris", "production", version)
            _, known = create_key(ws.metadata, "predictor")
            app = create_app(ws.registry, ["iris@production"], poll_interval_s=0.2, auth=True)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    ok = {"Authorization": f"Bearer {known}"}
                    predict = "/v1/models/iris/predict"
                    assert (await c.post(predict, json={"a": 1.0}, headers=ok)).status_code == 200
                    proxy.set_mode("down")
                    unseen = {"Authorization": "Bearer myd_0123456789ab_" + "y" * 43}
                    r = await c.post(predict, json={"a": 1.0}, headers=unseen)
                    assert r.status_code == 503, r.text
                    assert r.json()["code"] == "backend_unavailable"
                    await asyncio.sleep(0.5)  # reloads fail meanwhile: the keys read stay
                    r = await c.post(predict, json={"a": 1.0}, headers=ok)
                    assert r.status_code == 200
                    proxy.set_mode("up")
        finally:
            ws.close()
