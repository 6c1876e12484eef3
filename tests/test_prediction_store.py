"""One conformance suite for the prediction log's stores: a local folder and S3.

Every test runs on both. "Two hosts" are two logs with their own spool folders and one
store, as two replicas on two machines are.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pytest

from modelyard.backends.predictions import (
    PredictionLog,
    compact,
    open_parts,
    open_prediction_log,
    retain,
)

Factory = Callable[..., PredictionLog]


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """(URL, storage options) of a new, empty store of each kind."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    bucket = str(request.getfixturevalue("s3_bucket")).rsplit("/", 1)[0]
    endpoint = str(request.getfixturevalue("s3_endpoint"))
    return f"{bucket}/predictions", {"client_kwargs": {"endpoint_url": endpoint}}


@pytest.fixture
def host(store_url: tuple[str, dict[str, Any]], tmp_path: Path) -> Factory:
    """``host("a")``: the log of host "a" (its own spool), on the shared store."""
    url, options = store_url

    def make(name: str, **kwargs: Any) -> PredictionLog:
        return open_prediction_log(url, spool=tmp_path / name, storage_options=options, **kwargs)

    return make


def write(log: PredictionLog, request_id: str, rows: int = 1, model: str = "m") -> None:
    line = log.record(
        request_id=request_id,
        model=model,
        version=1,
        variant="production",
        inputs={"x": [float(i) for i in range(rows)]},
        outputs={"y": [2.0 * i for i in range(rows)]},
        latency_ms=1.0,
    )
    anyio.run(log.append, line)


def ids(log: PredictionLog, model: str | None = None) -> list[str]:
    table = log.read(model)
    return sorted(table["request_id"].to_pylist()) if table.num_rows else []


def test_a_written_row_is_read_once_before_during_and_after_shipping(host: Factory) -> None:
    a = host("a")
    a.start()
    try:
        write(a, "r1", rows=3)
        assert ids(a) == ["r1"] * 3  # from the spool, at once
    finally:
        a.close()
    assert ids(a) == ["r1"] * 3  # from the store, once
    assert not list(a.segments.glob("seg-*"))


def test_a_segment_reaches_the_store_within_the_delay(host: Factory) -> None:
    a, b = host("a", max_delay_s=1.0), host("b")
    a.start()
    try:
        write(a, "r1")
        started = time.monotonic()
        while ids(b) != ["r1"]:  # host b sees only what a shipped
            assert time.monotonic() - started < 3.0, "not shipped within the delay"
            time.sleep(0.05)
        assert ids(a) == ["r1"]
    finally:
        a.close()


def test_two_hosts_read_one_dataset_and_find_each_others_requests(host: Factory) -> None:
    a, b = host("a"), host("b")
    for log, rid in ((a, "from-a"), (b, "from-b")):
        log.start()
        write(log, rid, rows=2)
        log.close()
    c = host("c")  # a third machine: a CLI, the canary judge

    assert ids(c) == ["from-a"] * 2 + ["from-b"] * 2
    assert a.lookup(["from-b", "nope"]) == {"from-b": ("m", 2)}
    assert b.lookup(["from-a"]) == {"from-a": ("m", 2)}


def test_labels_sent_to_one_host_are_read_on_another(host: Factory) -> None:
    a, b = host("a"), host("b")
    a.start()
    anyio.run(a.append_labels, PredictionLog.label_line("r1", 1, 0, "m"))
    assert a.read_labels("m")["request_id"].to_pylist() == ["r1"]  # unshipped
    a.close()

    assert b.read_labels("m")["label"].to_pylist() == [1]
    assert b.read_labels("other").num_rows == 0


def test_a_killed_writers_segment_is_shipped_by_the_next_start(host: Factory) -> None:
    a = host("a")
    a.segments.mkdir(parents=True)
    line = a.record(
        request_id="orphan",
        model="m",
        version=1,
        variant="production",
        inputs={"x": [1.0]},
        outputs={"y": [2.0]},
        latency_ms=1.0,
    )
    # What a SIGKILL leaves: an open segment nobody holds a lock on.
    (a.segments / f"seg-{time.time_ns()}-99999-abcdef.open").write_bytes(line)

    a.start()
    a.close()

    assert ids(host("b")) == ["orphan"]
    assert not list(a.segments.glob("seg-*"))


def test_shipping_a_segment_twice_does_not_double_its_rows(host: Factory, tmp_path: Path) -> None:
    a = host("a")
    a.segments.mkdir(parents=True)
    segment = a.segments / f"seg-{time.time_ns()}-99999-abcdef.done"
    segment.write_bytes(
        a.record(
            request_id="r1",
            model="m",
            version=1,
            variant="production",
            inputs={"x": [1.0, 2.0]},
            outputs={"y": [2.0, 4.0]},
            latency_ms=1.0,
        )
    )
    kept = segment.read_bytes()
    assert a.ship() == 2
    # A crash after the parts were put, before the segment was removed: it ships again.
    segment.write_bytes(kept)

    assert a.ship() == 2
    assert ids(host("b")) == ["r1", "r1"]
    assert host("b").lookup(["r1"]) == {"r1": ("m", 2)}


def test_a_store_that_is_down_keeps_rows_in_the_spool_until_it_answers(
    host: Factory, store_url: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = store_url
    if options:  # S3: nothing listens on port 9
        down_url = url
        down_options = {
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
            "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
            "retries": 1,
        }
    else:  # a folder: a file stands where the store's folder should be
        down_url, down_options = str(tmp_path / "not-a-folder"), {}
        Path(down_url).write_text("not a folder")
    down = open_prediction_log(down_url, spool=tmp_path / "a", storage_options=down_options)
    down.start()
    write(down, "kept")
    down.close()  # its last ship fails: the rows stay in the spool, readable here

    assert list(down.segments.glob("seg-*.done"))
    up = host("a")  # the same host once the store answers
    assert up.ship() == 1
    assert ids(host("b")) == ["kept"]


def test_compaction_merges_small_parts_and_keeps_every_row(host: Factory) -> None:
    a = host("a")
    for i in range(4):  # four segments: four small parts of one model and day
        a.start()
        write(a, f"r{i}", rows=2)
        write(a, f"q{i}", model="other")
        a.close()
    before = ids(a)
    assert len([k for k in a.store.keys("model=m/") if "/seg-" in k]) == 4

    done = compact(a.store, min_age_s=0)

    assert done.parts_merged == 4 * 3  # m, other and the request index, per segment
    m_keys = a.store.keys("model=m/")
    assert len(m_keys) == 1 and "/merged-8-" in m_keys[0]
    assert ids(a) == before
    assert a.lookup(["r3", "q0"]) == {"r3": ("m", 2), "q0": ("other", 1)}
    assert compact(a.store, min_age_s=0).parts_merged == 0  # nothing left to merge


def test_compaction_waits_for_young_segments(host: Factory) -> None:
    a = host("a")
    for rid in ("r1", "r2"):
        a.start()
        write(a, rid)
        a.close()

    assert compact(a.store).parts_merged == 0  # an hour has not passed
    assert len(a.store.keys("model=m/")) == 2


def test_retention_deletes_days_older_than_kept(host: Factory) -> None:
    a = host("a")
    a.start()
    write(a, "today")
    a.close()
    old = pa.table({"request_id": ["old"], "row": [0], "model": ["m"]})
    a.store.put("model=m/date=2020-01-01/merged-1-x.parquet", old)
    a.store.put("labels/model=m/date=2020-01-01/merged-1-x.parquet", old)

    done = retain(a.store, keep_days=30, now=datetime.now(UTC))

    assert done.days_deleted == ("2020-01-01",) and done.parts_deleted == 2
    assert ids(a) == ["today"]
    assert retain(a.store, keep_days=1, now=datetime.now(UTC) + timedelta(days=2)).parts_deleted


def test_part_store_primitives(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    store = open_parts(url, **options)
    table = pa.table({"a": [1, 2]})
    store.put("model=m/date=2024-01-01/p1.parquet", table)
    store.put("model=mm/date=2024-01-01/p2.parquet", table)
    store.put("labels/model=m/date=2024-01-01/p3.parquet", table)

    assert store.keys("model=m/") == ["model=m/date=2024-01-01/p1.parquet"]
    assert len(store.keys("model=")) == 2 and len(store.keys("")) == 3
    found = store.read(["model=m/date=2024-01-01/p1.parquet", "model=m/date=x/gone.parquet"])
    assert list(found) == ["model=m/date=2024-01-01/p1.parquet"]
    assert found["model=m/date=2024-01-01/p1.parquet"]["a"].to_pylist() == [1, 2]
    store.delete(["model=mm/date=2024-01-01/p2.parquet", "model=never/x.parquet"])
    assert store.keys("model=") == ["model=m/date=2024-01-01/p1.parquet"]


def test_an_unknown_scheme_lists_the_valid_ones() -> None:
    from modelyard.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scheme 'ftp'; use a local folder or one of"):
        open_parts("ftp://host/x")


def test_spool_files_are_never_read_as_parts(tmp_path: Path) -> None:
    # The default store is the spool's own folder: segments and staging are not parts.
    log = open_prediction_log(str(tmp_path), spool=tmp_path)
    (tmp_path / ".staging" / "x" / "model=m" / "date=2024-01-01").mkdir(parents=True)
    shutil.copy(__file__, tmp_path / ".staging" / "x" / "model=m" / "date=2024-01-01" / "a.parquet")
    assert log.store.keys("") == []
    assert os.path.exists(tmp_path / ".staging")


def test_a_store_that_is_down_is_one_line_and_exit_2_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli_support import run_cli

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (tmp_path / "modelyard.toml").write_text(
        '[predictions]\nurl = "s3://nowhere/log"\nendpoint_url = "http://127.0.0.1:9"\n'
    )

    code, out, err = run_cli(capsys, "monitor", "compact", "-w", str(tmp_path))

    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: the prediction log at s3://nowhere/log did not answer")
    assert "check that the store is up" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("max_delay_s = inf", "expected seconds above 0 and at most 3600"),
        ("max_delay_s = 0", "expected seconds above 0 and at most 3600"),
        ('url = "s3://"', "names no bucket or folder"),
        ('url = "ftp://host/x"', "unknown scheme 'ftp'"),
    ],
)
def test_a_bad_prediction_log_setting_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, says: str
) -> None:
    from cli_support import run_cli

    (tmp_path / "modelyard.toml").write_text(f"[predictions]\n{setting}\n")

    code, _, err = run_cli(capsys, "monitor", "compact", "-w", str(tmp_path))

    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_compact_never_shows_a_token_of_the_store_url(
    s3_bucket: str, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_support import run_cli

    bucket = s3_bucket.rsplit("/", 1)[0]
    (tmp_path / "modelyard.toml").write_text(
        f'[predictions]\nurl = "{bucket}/log?token=s3cret"\nendpoint_url = "{s3_endpoint}"\n'
    )

    code, out, err = run_cli(capsys, "monitor", "compact", "--json", "-w", str(tmp_path))

    assert "s3cret" not in out + err
