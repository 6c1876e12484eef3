"""The small helpers every layer shares: atomic writes, time, redaction.

Each is the one implementation of its concern (issue 20), so these tests pin the
behaviour every caller inherits: a crash mid-write keeps the previous file, durations
and times have one grammar and one error, and no secret survives ``redact``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelyard import _time
from modelyard._files import atomic_path, atomic_write_bytes, atomic_write_text
from modelyard._redact import MASK, is_secret_name, redact, redact_value
from modelyard.errors import InvalidInputError, ModelyardError


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- atomic writes ---------------------------------------------------------------------
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    assert atomic_write_text(target, "first") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file_and_removes_the_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.parquet"
    target.write_text("previous")
    with pytest.raises(RuntimeError, match="writer died"), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer died")
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_a_process_killed_mid_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "coverage.json"
    target.write_text('{"ranges": []}')
    script = (
        "import os, sys\n"
        "from modelyard._files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    with open(tmp, 'w') as f:\n"
        "        f.write('{\"ranges\": [[')\n"
        "        f.flush()\n"
        "        os._exit(9)\n"  # no cleanup runs: as a power cut or a SIGKILL would
    )
    done = subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    assert done.returncode == 9
    assert target.read_text() == '{"ranges": []}'


def test_concurrent_writers_of_one_file_never_collide(tmp_path: Path) -> None:
    # A fixed temporary name (``x.toml.tmp``) lets one writer rename the other's file away.
    target = tmp_path / "modelyard.toml"
    payloads = [f"writer {i}\n".encode() * 1000 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(25):
                atomic_write_bytes(target, data)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert leftovers(tmp_path) == []


def test_the_file_and_its_folder_are_fsynced_before_the_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the synced file descriptors (Linux)")
    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "a.txt"
    atomic_write_text(target, "x")
    # The temporary file is synced before the rename (its data), then the folder (the name).
    assert len(synced) == 2
    assert Path(synced[0]).parent == tmp_path and Path(synced[0]).name.endswith(".tmp")
    assert Path(synced[1]) == tmp_path


def test_a_rewrite_keeps_the_permissions_and_a_new_file_gets_the_umask(tmp_path: Path) -> None:
    private = tmp_path / "secrets.toml"
    private.write_text("old")
    private.chmod(0o600)
    atomic_write_text(private, "new")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    umask = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644


def test_atomic_path_serves_writers_that_take_a_path(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "part.parquet"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")  # hidden from folder reads
        pq.write_table(pa.table({"x": [1, 2]}), tmp)
        assert not target.exists()  # nothing is visible before the block ends
    assert pq.read_table(target).column("x").to_pylist() == [1, 2]


# -- durations -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        (" 2d ", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_durations_have_one_grammar(text: str, expected: timedelta) -> None:
    assert _time.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["1 day", "soon", "1.5h", "-1h", "", "10", "h"])
def test_a_bad_duration_is_one_line_naming_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _time.parse_duration(text, "window")
    assert str(info.value) == (
        f"window {text!r} is not a duration; write a number and a unit: 30s, 15m, 1h, 2d or 1w"
    )


def test_zero_is_a_duration_only_where_allowed() -> None:
    assert _time.parse_duration("0s", "for", allow_zero=True) == timedelta(0)
    with pytest.raises(InvalidInputError, match="window '0s' is zero; give a duration above 0"):
        _time.parse_duration("0s", "window")
    with pytest.raises(InvalidInputError, match="'99999999999d' is too long"):
        _time.parse_duration("99999999999d", "--expires")
    with pytest.raises(InvalidInputError, match="'99999999d' is too long"):
        _time.parse_duration("99999999d", "window")  # a timedelta, but not back from now
    assert _time.parse_duration("5200w").days == 36_400  # just under 100 years: kept
    with pytest.raises(InvalidInputError, match="for 'x' is not a duration; .*: 0s, 30s"):
        _time.parse_duration("x", "for", allow_zero=True)


def test_alert_rules_use_the_same_duration_parser() -> None:
    from modelyard.monitoring import AlertRule

    rule = AlertRule(name="r", metric="slo.volume", condition="> 1", window="2d", **{"for": "0s"})
    assert (rule.span, rule.hold) == (timedelta(days=2), timedelta(0))
    with pytest.raises(ValueError, match="'1 day' is not a duration; .* 2d or 1w"):
        AlertRule(name="r", metric="slo.volume", condition="> 1", window="1 day")


# -- microsecond timestamps ----------------------------------------------------------------
@given(st.integers(min_value=-(10**16), max_value=4 * 10**15))
def test_microseconds_and_datetimes_convert_exactly(us: int) -> None:
    when = _time.to_datetime(us)
    assert when.tzinfo is UTC
    assert _time.to_us(when) == us


def test_float_seconds_are_off_where_the_helper_is_exact() -> None:
    when = _time.to_datetime(-8_863_166_121_002_044)  # 1689: float seconds round here
    assert int(when.timestamp() * 1_000_000) != -8_863_166_121_002_044
    assert _time.to_us(when) == -8_863_166_121_002_044


def test_now_us_is_now_in_utc_microseconds() -> None:
    before = datetime.now(UTC)
    now = _time.to_datetime(_time.now_us())
    assert before - timedelta(seconds=1) <= now <= datetime.now(UTC)
    assert _time.to_datetime(None) is None


# -- the naive-datetime rule -----------------------------------------------------------------
def test_a_naive_datetime_is_refused_with_one_line_naming_it() -> None:
    with pytest.raises(InvalidInputError) as info:
        _time.aware(datetime(2024, 1, 1), "start")
    assert isinstance(info.value, ModelyardError)
    assert str(info.value) == (
        "start 2024-01-01T00:00:00 has no time zone; pass an aware datetime (tzinfo=UTC)"
    )
    with pytest.raises(InvalidInputError, match="or pass assume_utc=True to read it as UTC$"):
        _time.aware(datetime(2024, 1, 1), "start", option="assume_utc=True")
    with pytest.raises(InvalidInputError, match="has no time zone"):
        _time.to_us(datetime(2024, 1, 1))


def test_assume_utc_reads_a_naive_datetime_as_utc_and_aware_ones_convert() -> None:
    assert _time.aware(datetime(2024, 1, 1, 5), assume_utc=True) == datetime(
        2024, 1, 1, 5, tzinfo=UTC
    )
    plus2 = datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=2)))
    assert _time.aware(plus2) == datetime(2024, 1, 1, 3, tzinfo=UTC)
    assert _time.aware(plus2).tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),  # a day is that UTC day
        ("2026-11-24T02:00Z", datetime(2026, 11, 24, 2, tzinfo=UTC)),
        ("2026-11-24T04:00:00+02:00", datetime(2026, 11, 24, 2, tzinfo=UTC)),
    ],
)
def test_times_in_text_need_a_zone_except_a_bare_day(text: str, expected: datetime) -> None:
    assert _time.parse_time(text, "--end") == expected


def test_a_time_in_text_without_a_zone_is_refused_unless_assume_utc() -> None:
    with pytest.raises(InvalidInputError) as info:
        _time.parse_time("2026-11-24T02:00", "--date")
    assert str(info.value) == (
        "--date '2026-11-24T02:00' has no time zone; add Z or +00:00 for UTC, "
        "or pass --assume-utc to read it as UTC"
    )
    assert _time.parse_time("2026-11-24T02:00", "--date", assume_utc=True) == datetime(
        2026, 11, 24, 2, tzinfo=UTC
    )
    with pytest.raises(InvalidInputError, match="--date 'tomorrow' is not a time; write ISO"):
        _time.parse_time("tomorrow", "--date")


# -- redaction ---------------------------------------------------------------------------
SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"postgresql://bob:{SECRET}@db:5432/meta", "postgresql://bob:***@db:5432/meta"),
        (f"postgresql+psycopg://bob:{SECRET}@x@db/meta", "postgresql+psycopg://bob:***@db/meta"),
        (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix", "s3://AKIAEXAMPLE:***@bucket/prefix"),
        (
            f"https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature={SECRET}"
            f"&X-Amz-Security-Token={SECRET}&x-id=GetObject",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***"
            "&X-Amz-Security-Token=***&x-id=GetObject",
        ),
        (
            f"https://api.example.com/v1?api_key={SECRET}&token={SECRET}&page=2",
            "https://api.example.com/v1?api_key=***&token=***&page=2",
        ),
        (f"host=db user=bob password={SECRET} dbname=m", "host=db user=bob password=*** dbname=m"),
        (
            f'cannot connect to "http://u:{SECRET}@127.0.0.1:1/b?sig={SECRET}": refused',
            'cannot connect to "http://u:***@127.0.0.1:1/b?sig=***": refused',
        ),
    ],
)
def test_redact_hides_passwords_and_secret_parameters(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert SECRET not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://bob@db/meta",
        "sqlite:///tmp/x.db",
        "http://127.0.0.1:8000/v1/models/churn/predict?version=3",
        "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dt_1",
        "window '1 day' is not a duration; tokenizer=bert-base",
    ],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


def test_secret_settings_are_hidden_whole_and_urls_in_others() -> None:
    assert redact_value("security.api_key", "abc") == MASK
    assert redact_value("alerts.sinks.pager.token", "abc") == MASK
    assert (
        redact_value("metadata.url", f"postgresql://u:{SECRET}@h/db") == "postgresql://u:***@h/db"
    )
    assert redact_value("serve.port", 8000) == 8000
    assert [n for n in ("Authorization", "AWSAccessKeyId", "x-api-key") if is_secret_name(n)] == [
        "Authorization",
        "AWSAccessKeyId",
        "x-api-key",
    ]
    assert not any(is_secret_name(n) for n in ("tokenizer", "monkey", "url", "keyspace"))
