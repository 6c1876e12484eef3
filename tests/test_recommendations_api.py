"""The recommendations read API: ``RecommendationLists``, ``GET /v1/recommendations/USER``
and ``modelyard recommendations show|status|rollback``.

The publish/read/rollback contract runs on both online stores (SQLite and the real
Redis, in a namespace of its own): a reader answers from one night, never a mix of two,
while nights are published under it; ``keep`` drops older nights; a night published
again replaces it; rollback goes back one night. The route runs in process through
httpx's ASGI transport: the answer, the popularity fallback, every error, keys and
roles, a store that is down. The commands run in process as a user types them.

Redis is shared with other tests: every model this module publishes has a unique name.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import modelyard
from cli_support import run_cli
from fault_proxy import FaultProxy
from modelyard.backends.online import OnlineStore, open_online
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.security import create_key
from modelyard.serving import RecommendationLists, create_app

NIGHTS = [f"2026-12-{d:02d}" for d in range(1, 29)]
K = 5
USERS = [1, 2, 3, -7, 2**63 - 1]


def _items(n: int, users: int = len(USERS), k: int = K) -> np.ndarray[Any, Any]:
    """Night ``n``'s items: every id tells its night (n * 1000 + user row * 10 + rank, for
    up to 90 users; the popularity list is n * 1000 + 900 + rank)."""
    return n * 1000 + np.arange(users)[:, None] * 10 + np.arange(k)[None, :]


def _scores(users: int = len(USERS), k: int = K) -> np.ndarray[Any, Any]:
    return np.tile(np.linspace(0.93, 0.5, k, dtype=np.float32), (users, 1))


def _popular(n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return n * 1000 + 900 + np.arange(K), np.linspace(0.8, 0.4, K)


def _publish(lists: RecommendationLists, model: str, n: int, **kwargs: Any) -> Any:
    return lists.publish(
        model, NIGHTS[n], USERS, _items(n), _scores(), popular=_popular(n), **kwargs
    )


def _unique(name: str = "rec") -> str:
    return f"{name}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """Each online store, on Redis in a namespace of its own (removed afterwards)."""
    if request.param == "sqlite":
        found = open_online(f"sqlite:///{tmp_path / 'online.db'}")
        found.open()
        yield found
        found.close()
        return
    from modelyard.backends.online.redis import RedisOnlineStore

    prefix = f"test:{uuid.uuid4().hex}:"
    redis_store = RedisOnlineStore(str(request.getfixturevalue("redis_url")), prefix=prefix)
    redis_store.open()
    try:
        yield redis_store
    finally:
        for key in redis_store.client.scan_iter(match=prefix + "*"):
            redis_store.client.delete(key)
        redis_store.close()


def _view_exists(store: OnlineStore, model: str, edition: str) -> bool:
    return store.read(f"recommendations/{model}/{edition}", [b"\x00popular"])[0] is not None


# -- the contract, on both stores ----------------------------------------------------------------
def test_publish_then_read_own_list_fallback_and_publication(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    before = datetime.now(UTC)
    items, scores = _items(0), _scores()
    items[1, 3:], scores[1, 3:] = -1, -np.inf  # top_n's padding: user 2 has 3 unseen items
    published = lists.publish(
        "rec", NIGHTS[0], USERS, items, scores, popular=_popular(0), version=3
    )
    assert (published.night, published.version, published.users, published.k) == (
        NIGHTS[0],
        3,
        len(USERS),
        K,
    )
    assert before <= published.published_at <= datetime.now(UTC)
    assert lists.current("rec") == lists.current() == published

    own = lists.read(1, k=3)
    assert (own.items, own.scores, own.fallback) == ([0, 1, 2], [0.93, 0.8225, 0.715], False)
    assert lists.read(-7, k=K).items == [30, 31, 32, 33, 34]
    assert lists.read(2**63 - 1, k=1).items == [40]
    assert lists.read(2, k=K).items == [10, 11, 12]  # the padding is not a recommendation
    new = lists.read(99, k=2, model="rec")
    assert (new.items, new.scores, new.fallback) == ([900, 901], [0.8, 0.7], True)
    assert new.publication == published


def test_reading_refuses_what_cannot_be_answered(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    with pytest.raises(NotFoundError, match="run the nightly job"):
        lists.read(1)
    with pytest.raises(NotFoundError, match="for model 'rec'"):
        lists.read(1, model="rec")
    _publish(lists, "rec", 0)
    with pytest.raises(InvalidInputError, match=f"ask for k <= {K}"):
        lists.read(1, k=K + 1)
    with pytest.raises(InvalidInputError, match="1 or more"):
        lists.read(1, k=0)
    with pytest.raises(InvalidInputError, match="int64"):
        lists.read(2**63)
    with pytest.raises(NotFoundError, match="'other'"):
        lists.read(1, model="other")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "a/b"}, "model name"),
        ({"model": ""}, "model name"),
        ({"night": "2026-13-01"}, "YYYY-MM-DD"),
        ({"night": "20261201"}, "YYYY-MM-DD"),
        ({"users": [1, 2**64]}, "int64"),
        ({"users": ["a"] * len(USERS)}, "integer"),
        ({"items": _items(0)[:, :2]}, "shape"),
        ({"items": _items(0)[:, :0], "scores": _scores()[:, :0]}, "1 to 65535"),
        ({"popular": (np.arange(3), np.arange(4))}, "popular"),
        ({"keep": 0}, "keep"),
    ],
)
def test_publishing_refuses_bad_lists_with_one_line(change: dict[str, Any], message: str) -> None:
    lists = RecommendationLists(open_online("sqlite://"))
    args: dict[str, Any] = {
        "model": "rec",
        "night": NIGHTS[0],
        "users": USERS,
        "items": _items(0),
        "scores": _scores(),
        "popular": _popular(0),
    }
    keep = change.pop("keep", 2)
    with pytest.raises(InvalidInputError, match=message):
        lists.publish(**{**args, **change}, keep=keep)


def test_keep_drops_the_older_nights_and_rollback_goes_back_one(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    for n in range(3):
        latest = _publish(lists, "rec", n, version=n + 1)
    assert latest.kept_nights == (NIGHTS[2], NIGHTS[1]) and latest.previous_night == NIGHTS[1]
    assert not _view_exists(store, "rec", NIGHTS[0])
    assert _view_exists(store, "rec", NIGHTS[1]) and _view_exists(store, "rec", NIGHTS[2])
    assert lists.read(1).items[0] == 2000

    back = lists.rollback("rec")
    assert (back.night, back.version, back.previous) == (NIGHTS[1], 2, None)
    assert lists.current("rec") == back and lists.current() == back
    assert lists.read(1).items[0] == 1000 and lists.read(99).items[0] == 1900
    with pytest.raises(NotFoundError, match="no earlier night kept"):
        lists.rollback("rec")

    # The next night replaces the one rolled back from; it is dropped.
    following = _publish(lists, "rec", 3)
    assert following.kept_nights == (NIGHTS[3], NIGHTS[1])
    assert following.previous_night == NIGHTS[1]
    assert not _view_exists(store, "rec", NIGHTS[2])


def test_keep_one_leaves_nothing_to_roll_back_to(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    _publish(lists, "rec", 0, keep=1)
    latest = _publish(lists, "rec", 1, keep=1)
    assert latest.kept_nights == (NIGHTS[1],) and latest.previous is None
    assert not _view_exists(store, "rec", NIGHTS[0])
    with pytest.raises(NotFoundError, match="goes back one night only"):
        lists.rollback("rec")
    with pytest.raises(NotFoundError, match="nothing|no published"):
        lists.rollback("never_published")


def test_republishing_a_night_replaces_it(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    _publish(lists, "rec", 0)
    first = _publish(lists, "rec", 1, version=1)
    again = lists.publish(
        "rec", NIGHTS[1], USERS, _items(7), _scores(), popular=_popular(7), version=2
    )
    assert (again.night, again.version) == (NIGHTS[1], 2)
    assert again.edition != first.edition  # written beside the one readers had
    assert again.kept_nights == (NIGHTS[1], NIGHTS[0]) and again.previous_night == NIGHTS[0]
    assert not _view_exists(store, "rec", first.edition)
    found = lists.read(1)
    assert found.items[0] == 7000 and found.publication.night == NIGHTS[1]
    assert lists.rollback("rec").night == NIGHTS[0]  # the night before, not the first try
    # After the rollback the newer night is published again: a fresh edition again.
    last = lists.publish("rec", NIGHTS[1], USERS, _items(8), _scores(), popular=_popular(8))
    assert last.kept_nights == (NIGHTS[1], NIGHTS[0]) and lists.read(1).items[0] == 8000


def test_two_models_each_have_their_own_nights(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    _publish(lists, "a", 0)
    _publish(lists, "a", 1)
    _publish(lists, "b", 5)
    assert lists.current().model == "b"  # type: ignore[union-attr]
    assert lists.read(1).items[0] == 5000 and lists.read(1, model="a").items[0] == 1000
    lists.rollback("a")  # not the newest: the default stays b
    assert lists.read(1).items[0] == 5000 and lists.read(1, model="a").items[0] == 0


def test_a_reader_never_sees_a_mix_of_two_nights(store: OnlineStore) -> None:
    lists = RecommendationLists(store)
    users = list(range(90))  # row * 10 + rank stays below 1000: an item id tells its night
    nights = 12

    def publish(n: int) -> None:
        lists.publish(
            "rec",
            NIGHTS[n],
            users,
            _items(n, len(users)),
            _scores(len(users)),
            popular=_popular(n),
        )

    publish(0)
    done = threading.Event()
    answers: list[tuple[str, list[int]]] = []
    errors: list[BaseException] = []

    def read(reader: int) -> None:
        # Its own store object per thread, as a server's reader threads have.
        mine = RecommendationLists(store)
        count = 0
        while not done.is_set() or count < 50:
            user = (reader * 37 + count) % (len(users) + 20)  # some beyond the lists
            try:
                found = mine.read(user, k=K, model="rec" if count % 2 else None)
            except NotFoundError as exc:  # replaced twice during one read: asked again
                assert "ask again" in exc.message
                continue
            except BaseException as exc:
                errors.append(exc)
                return
            answers.append((found.publication.night, found.items))
            count += 1

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(1, nights):
            publish(n)
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(answers) >= 200
    for night, items in answers:
        n = NIGHTS.index(night)
        assert items and {i // 1000 for i in items} == {n}, (night, items)
    assert {night for night, _ in answers} > {NIGHTS[0], NIGHTS[nights - 1]}


# -- the route -------------------------------------------------------------------------------------
@asynccontextmanager
async def serving(ws: modelyard.Workspace, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    kwargs.setdefault("poll_interval_s", 0)
    app = create_app(ws.registry, [], features=ws.features, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


@pytest.fixture
def published(tmp_path: Path, online_url: str) -> Iterator[tuple[modelyard.Workspace, str]]:
    """A workspace on each online store with two nights of a uniquely named model."""
    ws = modelyard.Workspace.init(tmp_path / "ws", online_url=online_url)
    model = _unique()
    lists = RecommendationLists(ws.online)
    _publish(lists, model, 0, version=2)
    _publish(lists, model, 1, version=3)
    try:
        yield ws, model
    finally:
        for night in NIGHTS[:2]:
            ws.online.drop(f"recommendations/{model}/{night}")
        ws.close()


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body.pop("request_id") == r.headers["x-request-id"]
    return body


def _refused(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert b"\n" not in r.content  # one line
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["request_id"] == r.headers["x-request-id"]
    for word in words:
        assert word in body["message"], body["message"]
    return body


@pytest.mark.anyio
async def test_the_route_answers_a_users_list_and_the_fallback(
    published: tuple[modelyard.Workspace, str],
) -> None:
    ws, model = published
    publication = RecommendationLists(ws.online).current(model)
    assert publication is not None
    async with serving(ws) as client:
        body = _ok(await client.get(f"/v1/recommendations/3?k=2&model={model}"))
        assert body == {
            "user_id": 3,
            "model": model,
            "night": NIGHTS[1],
            "version": 3,
            "published_at": publication.published_at.isoformat().replace("+00:00", "Z"),
            "fallback": False,
            "items": [{"item_id": 1020, "score": 0.93}, {"item_id": 1021, "score": 0.8225}],
        }
        assert body["published_at"].endswith("Z")
        default_k = _ok(await client.get(f"/v1/recommendations/-7?model={model}"))
        assert [i["item_id"] for i in default_k["items"]] == [1030, 1031, 1032, 1033, 1034]
        new = _ok(await client.get(f"/v1/recommendations/123456?k=3&model={model}"))
        assert new["fallback"] == "popularity" and new["user_id"] == 123456
        assert [i["item_id"] for i in new["items"]] == [1900, 1901, 1902]
        largest = _ok(await client.get(f"/v1/recommendations/{2**63 - 1}?k=1&model={model}"))
        assert largest["items"] == [{"item_id": 1040, "score": 0.93}]


@pytest.mark.anyio
async def test_every_bad_request_is_a_one_line_4xx(
    published: tuple[modelyard.Workspace, str],
) -> None:
    ws, model = published
    m = f"model={model}"
    cases = {
        f"/v1/recommendations/abc?{m}": (422, "validation_failed", "user_id", "not an integer"),
        f"/v1/recommendations/1.5?{m}": (422, "validation_failed", "not an integer"),
        f"/v1/recommendations/{2**63}?{m}": (422, "validation_failed", "beyond int64"),
        f"/v1/recommendations/{-(2**63) - 1}?{m}": (422, "validation_failed", "beyond int64"),
        f"/v1/recommendations/{'9' * 400}?{m}": (422, "validation_failed", "beyond int64"),
        f"/v1/recommendations/1?k=abc&{m}": (422, "validation_failed", "'k'", "whole number"),
        f"/v1/recommendations/1?k=2.0&{m}": (422, "validation_failed", "whole number"),
        f"/v1/recommendations/1?k=0&{m}": (422, "validation_failed", "1 or more"),
        f"/v1/recommendations/1?k=-3&{m}": (422, "validation_failed", "1 or more"),
        f"/v1/recommendations/1?k={K + 1}&{m}": (422, "validation_failed", f"k <= {K}"),
        f"/v1/recommendations/1?k={'9' * 30}&{m}": (422, "validation_failed", f"k <= {K}"),
        f"/v1/recommendations/1?k=1&k=2&{m}": (422, "validation_failed", "twice"),
        f"/v1/recommendations/1?user=2&{m}": (422, "validation_failed", "unknown query"),
        "/v1/recommendations/1?model=": (422, "validation_failed", "model is empty"),
        "/v1/recommendations/1?model=nobody": (404, "not_found", "'nobody'", "nightly job"),
    }
    async with serving(ws) as client:
        for url, (status, code, *words) in cases.items():
            _refused(await client.get(url), status, code, *words)
        assert (await client.get(f"/v1/recommendations/1?{m}")).status_code == 200
        assert (await client.get("/v1/recommendations/")).status_code == 404
        assert (await client.get("/v1/recommendations/1/2")).status_code == 404
        assert (await client.post("/v1/recommendations/1")).status_code == 405


@pytest.mark.anyio
async def test_nothing_published_is_a_404_saying_to_run_the_nightly_job(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    async with serving(sqlite_workspace) as client:
        _refused(await client.get("/v1/recommendations/1"), 404, "not_found", "nightly job")
        # The newest model is the default once one is published.
        _publish(RecommendationLists(sqlite_workspace.online), "rec", 4)
        body = _ok(await client.get("/v1/recommendations/1?k=1"))
        assert (body["model"], body["night"], body["version"]) == ("rec", NIGHTS[4], None)


@pytest.mark.anyio
async def test_a_rollback_or_a_new_night_is_read_at_once(
    published: tuple[modelyard.Workspace, str], server_log: list[dict[str, Any]]
) -> None:
    ws, model = published
    url = f"/v1/recommendations/1?k=1&model={model}"
    lists = RecommendationLists(ws.online)
    async with serving(ws) as client:
        assert _ok(await client.get(url))["items"][0]["item_id"] == 1000
        lists.rollback(model)
        body = _ok(await client.get(url))
        assert (body["night"], body["version"], body["items"][0]["item_id"]) == (NIGHTS[0], 2, 0)
        _publish(lists, model, 2, version=4)
        assert _ok(await client.get(url))["items"][0]["item_id"] == 2000
        metrics = (await client.get("/metrics")).text
    served = {
        s.labels["model"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "modelyard_recommendation_requests_total" and s.labels["code"] == "200"
    }
    assert served == {model: 3.0}
    lines = [line for line in server_log if line["message"] == "recommendations"]
    assert [(line["model"], line["version"], line["night"]) for line in lines] == [
        (model, 3, NIGHTS[1]),
        (model, 2, NIGHTS[0]),
        (model, 4, NIGHTS[2]),
    ]
    assert all(line["status"] == 200 and line["latency_ms"] > 0 for line in lines)


@pytest.mark.anyio
async def test_keys_roles_and_the_models_a_key_is_limited_to(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    lists = RecommendationLists(ws.online)
    _publish(lists, "other", 0)
    _publish(lists, "rec", 1)  # the newest
    keys = {
        "admin": create_key(ws.metadata, "admin")[1],
        "predictor": create_key(ws.metadata, "predictor")[1],
        "rec_only": create_key(ws.metadata, "predictor", models=["rec"])[1],
        "other_only": create_key(ws.metadata, "predictor", models=["other"])[1],
        "reader": create_key(ws.metadata, "reader")[1],
    }
    newest, other = "/v1/recommendations/1", "/v1/recommendations/1?model=other"
    expected = {
        ("anonymous", newest): 401,
        ("reader", newest): 403,
        ("admin", newest): 200,
        ("admin", other): 200,
        ("predictor", newest): 200,
        ("predictor", other): 200,
        ("rec_only", newest): 200,
        ("rec_only", other): 403,
        ("other_only", newest): 403,  # the newest lists are rec's
        ("other_only", other): 200,
    }
    got = {}
    async with serving(ws, auth=True) as client:
        for who, url in expected:
            headers = {} if who == "anonymous" else {"Authorization": f"Bearer {keys[who]}"}
            r = await client.get(url, headers=headers)
            got[(who, url)] = r.status_code
            if r.status_code != 200:
                code = "unauthenticated" if r.status_code == 401 else "forbidden"
                _refused(r, r.status_code, code)
        r = await client.get(other, headers={"Authorization": f"Bearer {keys['rec_only']}"})
        assert "not the recommendations of 'other'" in r.json()["message"]
        paths = (
            await client.get("/openapi.json", headers={"Authorization": "Bearer " + keys["admin"]})
        ).json()["paths"]
    assert got == expected
    assert paths["/v1/recommendations/{user_id}"]["get"]["security"] == [{"apiKey": []}]


@pytest.mark.anyio
async def test_a_redis_store_that_is_down_is_a_fast_503_and_recovers(
    tmp_path: Path, redis_url: str
) -> None:
    import time

    import anyio

    model = _unique()
    with FaultProxy("127.0.0.1", 6379) as proxy:
        ws = modelyard.Workspace.init(tmp_path / "ws", online_url=proxy.url("redis", "/15"))
        _publish(RecommendationLists(ws.online), model, 0)
        url = f"/v1/recommendations/1?model={model}"
        try:
            async with serving(ws) as client:
                assert (await client.get(url)).status_code == 200
                proxy.set_mode("down")
                started = time.perf_counter()
                _refused(await client.get(url), 503, "online_store_unavailable", "retry")
                assert time.perf_counter() - started < 5  # the client's timeouts, not more
                started = time.perf_counter()
                _refused(await client.get(url), 503, "online_store_unavailable")
                assert time.perf_counter() - started < 0.5  # the breaker answers at once
                proxy.set_mode("up")
                deadline = time.monotonic() + 10
                while (await client.get(url)).status_code != 200:
                    assert time.monotonic() < deadline, "no recovery"
                    await anyio.sleep(0.2)
        finally:
            proxy.set_mode("up")
            ws.online.drop(f"recommendations/{model}/{NIGHTS[0]}")
            ws.close()


@pytest.mark.anyio
async def test_a_sqlite_store_that_does_not_exist_is_a_503(tmp_path: Path) -> None:
    modelyard.Workspace.init(tmp_path / "ws").close()
    # Configured (not the default file), so reading never creates it: it does not exist.
    ws = modelyard.Workspace(tmp_path / "ws", online_url=f"sqlite:///{tmp_path / 'online.db'}")
    try:
        async with serving(ws) as client:
            _refused(
                await client.get("/v1/recommendations/1"),
                503,
                "online_store_unavailable",
                "does not exist",
            )
    finally:
        ws.close()


def test_the_openapi_document_holds_for_the_route(sqlite_workspace: modelyard.Workspace) -> None:
    from test_fuzz import _fuzz

    _publish(RecommendationLists(sqlite_workspace.online), "rec", 0)
    app = create_app(sqlite_workspace.registry, [], features=sqlite_workspace.features)
    assert not (failures := _fuzz(app)), "\n\n".join(failures)


# -- the command line --------------------------------------------------------------------------
def test_show_status_and_rollback_commands(
    sqlite_workspace: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    root = str(ws.root)
    lists = RecommendationLists(ws.online)
    _publish(lists, "rec", 0, version=1)
    latest = _publish(lists, "rec", 1, version=2)

    code, out, err = run_cli(
        capsys, "recommendations", "show", "2", "--k", "2", "--json", "-w", root
    )
    assert code == 0, err
    assert json.loads(out) == {
        "user_id": 2,
        "model": "rec",
        "night": NIGHTS[1],
        "version": 2,
        "published_at": latest.published_at.isoformat().replace("+00:00", "Z"),
        "fallback": False,
        "items": [{"item_id": 1010, "score": 0.93}, {"item_id": 1011, "score": 0.8225}],
    }
    code, out, err = run_cli(capsys, "recommendations", "show", "99", "-w", root)
    assert code == 0, err
    assert "popularity list" in out and "1900" in out and NIGHTS[1] in out

    code, out, err = run_cli(capsys, "recommendations", "status", "--json", "-w", root)
    assert code == 0, err
    status = json.loads(out)
    assert {k: status[k] for k in ("model", "night", "version", "users", "k")} == {
        "model": "rec",
        "night": NIGHTS[1],
        "version": 2,
        "users": len(USERS),
        "k": K,
    }
    assert status["previous_night"] == NIGHTS[0] and status["kept_nights"] == NIGHTS[1::-1]
    code, out, err = run_cli(capsys, "recommendations", "status", "-w", root)
    assert code == 0 and "previous night" in out and NIGHTS[0] in out

    code, out, err = run_cli(capsys, "recommendations", "rollback", "--model", "rec", "-w", root)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    assert f"readers now get night {NIGHTS[0]} (version 1) instead of {NIGHTS[1]}" in out
    assert lists.read(2, k=1).items == [10]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "abc"], "not a whole number"),
        (["show", "1", "--k", "x"], "not a whole number"),
        (["show", "1", "--k", "0"], "1 or more"),
        (["show", "1", "--k", "6"], "k <= 5"),
        (["show", str(2**63)], "beyond int64"),
        (["show", "1", "--model", "nobody"], "nightly job"),
        (["status", "--model", "nobody"], "nightly job"),
        (["rollback", "--model", "nobody"], "nightly job"),
        (["rollback", "--model", "rec"], "no earlier night"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    sqlite_workspace: modelyard.Workspace,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    _publish(RecommendationLists(sqlite_workspace.online), "rec", 0)
    code, out, err = run_cli(capsys, "recommendations", *args, "-w", str(sqlite_workspace.root))
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
