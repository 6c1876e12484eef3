"""One contract for every online store (SQLite and a real Redis): latest row wins."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from modelyard.backends.online import open_online
from modelyard.errors import BackendUnavailableError, ConfigError, OnlineStoreUnavailableError


def test_read_returns_rows_in_key_order_and_none_for_missing(online_store: Any) -> None:
    online_store.write("v", [(b"a", 10, b"A"), (b"b", 20, b"B")])
    assert online_store.read("v", [b"b", b"x", b"a"]) == [(20, b"B"), None, (10, b"A")]
    assert online_store.read("v", [b"a"]) == [(10, b"A")]
    assert online_store.read("w", [b"a"]) == [None]  # views are separate


def test_a_newer_row_replaces_and_an_older_one_does_not(online_store: Any) -> None:
    online_store.write("v", [(b"a", 10, b"old")])
    online_store.write("v", [(b"a", 30, b"new")])
    online_store.write("v", [(b"a", 20, b"late")])  # arrives late: must not roll back
    assert online_store.read("v", [b"a"]) == [(30, b"new")]
    online_store.write("v", [(b"a", 30, b"same-time")])  # equal time: last written wins
    assert online_store.read("v", [b"a"]) == [(30, b"same-time")]


def test_rewriting_the_same_rows_is_idempotent(online_store: Any) -> None:
    rows = [(str(i).encode(), i, f"v{i}".encode()) for i in range(1500)]
    online_store.write("v", rows)
    online_store.write("v", rows)
    keys = [r[0] for r in rows]
    assert online_store.read("v", keys) == [(r[1], r[2]) for r in rows]


def test_binary_keys_and_values_round_trip(online_store: Any) -> None:
    key, value = b'[1,"caf\\u00e9"]\x00\xff', bytes(range(256))
    online_store.write("v", [(key, 1_700_000_000_000_000, value)])
    assert online_store.read("v", [key]) == [(1_700_000_000_000_000, value)]


def test_drop_removes_a_view(online_store: Any) -> None:
    online_store.write("v", [(b"a", 1, b"A")])
    online_store.drop("v")
    assert online_store.read("v", [b"a"]) == [None]


def test_concurrent_writers_keep_the_newest_row(online_store: Any) -> None:
    def writer(offset: int) -> None:
        for ts in range(offset, 200, 4):
            online_store.write("v", [(b"k", ts, str(ts).encode())])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert online_store.read("v", [b"k"]) == [(199, b"199")]


def test_unknown_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="sqlite://, redis://"):
        open_online("memcached://x")


def test_unreachable_redis_is_a_one_line_error() -> None:
    store = open_online("redis://127.0.0.1:1/0")
    with pytest.raises(BackendUnavailableError, match="cannot reach the online store"):
        store.open()


@pytest.mark.parametrize(
    "suffix", ["?prefix=app", "?socket_timeout=abc", "PORT:abc/0"], ids=["param", "value", "port"]
)
def test_a_redis_url_redis_py_refuses_is_a_one_line_config_error(
    redis_url: str, suffix: str
) -> None:
    # These were a TypeError / ValueError traceback from inside redis-py.
    url = "redis://127.0.0.1:abc/0" if suffix.startswith("PORT") else redis_url + suffix
    store = open_online(url)
    with pytest.raises(ConfigError, match=r"online store URL .* is not one Redis accepts"):
        store.open()


def test_a_sqlite_store_that_may_not_create_its_file_creates_it_on_first_write_only(
    tmp_path: Path,
) -> None:
    from modelyard.features import _online

    path = tmp_path / "typo.db"
    store = open_online(f"sqlite:///{path}", create=False)
    store.open()
    with pytest.raises(OnlineStoreUnavailableError, match=f"online store {path} does not exist"):
        store.read("v", [b"a"])
    assert _online.watermark(store, "v", 1) is None  # holds nothing yet: not an error
    store.drop("v")
    assert not path.exists()  # opening, reading and dropping created nothing
    store.write("v", [(b"a", 1, b"A")])
    assert path.exists() and store.read("v", [b"a"]) == [(1, b"A")]
    store.close()


def test_a_sqlite_store_in_a_missing_folder_is_a_config_error_on_open(tmp_path: Path) -> None:
    store = open_online(f"sqlite:///{tmp_path / 'nowhere' / 'online.db'}", create=False)
    with pytest.raises(ConfigError, match=r"its folder .*nowhere does not exist; fix online.url"):
        store.open()
    assert not (tmp_path / "nowhere").exists()
