"""Canary rollout: the live traffic split, servers that follow it, and
``modelyard release canary`` promoting a healthy candidate or rolling back a bad one.

The rollouts run against real ``modelyard serve`` processes (server_support.py) with
real traffic from background threads, and judge the candidate from the prediction log
those servers write, as in production; steps last a second or two. The routing details
(a static policy overridden, a candidate that cannot load) are checked in process,
where the test decides when the server polls.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

import modelyard
from cli_support import run_cli
from modelyard.backends.predictions import PredictionLog, open_prediction_log
from modelyard.contracts import Field, Schema
from modelyard.errors import ConfigError, ConflictError, InvalidInputError
from modelyard.registry import (
    STALE_AFTER_S,
    Signature,
    claim_traffic,
    clear_traffic,
    get_traffic,
    set_traffic,
    signature_problems,
)
from modelyard.release import (
    StepResult,
    canary_settings,
    parse_canary_config,
    release_history,
    run_canary,
    stop_canary,
)
from modelyard.serving import ServeOptions, create_app
from modelyard.serving._options import Canary
from monitor_support import train_diabetes
from server_support import ServerProcess, Traffic, running_server, wait_until

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0]})
POLL = ("--poll-interval", "0.2")


def _times(factor: float, *, sleep_s: float = 0.0) -> Callable[[pd.DataFrame], dict[str, Any]]:
    # Made in a function so that cloudpickle stores it by value: the server process
    # cannot import this module. Versions differ by factor: an answer shows its version.
    def times(frame: pd.DataFrame) -> dict[str, Any]:
        if sleep_s:
            import time

            time.sleep(sleep_s)
        return {"y": frame["a"] * factor}

    return times


def _fails_below_zero(frame: pd.DataFrame) -> dict[str, Any]:
    if (frame["a"] < 0).any():
        raise RuntimeError("this candidate is broken on negative input")
    return {"y": frame["a"] * 2}


def _register(
    ws: modelyard.Workspace, name: str, model: Any, alias: str | None, example: Any = EXAMPLE
) -> int:
    with ws.start_run(name) as run:
        logged = ws.registry.log_model(run, model, input_example=example)
    version = ws.registry.register(name, logged).version
    if alias is not None:
        ws.registry.set_alias(name, alias, version)
    return version


def _pair(ws: modelyard.Workspace, name: str, candidate: Any = None) -> None:
    """``name``: v1 (y = a) at production, v2 (y = 2a, or ``candidate``) at staging."""
    _register(ws, name, _times(1.0), "production")
    _register(ws, name, candidate if candidate is not None else _times(2.0), "staging")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose tests each own their model names; alerts also go to a file."""
    folder = tmp_path_factory.mktemp("canary") / "ws"
    with modelyard.Workspace.init(folder, environ={}):
        pass
    with (folder / "modelyard.toml").open("a") as f:
        f.write('\n[alerts.sinks.pager]\ntype = "file"\npath = "alerts.jsonl"\n')
    return folder


@pytest.fixture
def ws(root: Path) -> Iterator[modelyard.Workspace]:
    with modelyard.Workspace(root) as ws:
        yield ws


def _versions_answering(
    server: ServerProcess, model: str, n: int = 60, body: Any = None
) -> Counter[int]:
    with httpx.Client(timeout=10) as client:
        url = f"{server.url}/v1/models/{model}/predict"
        json = {"a": 1.0} if body is None else body
        return Counter(client.post(url, json=json).json()["version"] for _ in range(n))


def _actions(ws: modelyard.Workspace, name: str) -> list[str]:
    return [r.action for r in reversed(release_history(ws.metadata, name))]


# -- the traffic split -------------------------------------------------------------------
def test_a_traffic_split_is_set_read_and_cleared(workspace: modelyard.Workspace) -> None:
    _pair(workspace, "split")
    assert get_traffic(workspace.registry, "split") is None
    first = set_traffic(workspace.registry, "split", "staging", 10, exclusive=True)
    assert (first.candidate, first.percent) == ("staging", 10.0)
    with pytest.raises(ConflictError, match="--stop"):
        set_traffic(workspace.registry, "split", "staging", 20, exclusive=True)
    set_traffic(workspace.registry, "split", "staging", 50)
    now = get_traffic(workspace.registry, "split")
    assert now is not None and now.percent == 50.0 and now.updated_at.tzinfo is not None
    assert clear_traffic(workspace.registry, "split") == now
    assert clear_traffic(workspace.registry, "split") is None
    with pytest.raises(InvalidInputError, match="outside 0..100"):
        set_traffic(workspace.registry, "split", "staging", 120)
    with pytest.raises(LookupError, match="no alias 'canary'"):
        set_traffic(workspace.registry, "split", "canary", 10)


@pytest.mark.slow
def test_every_worker_follows_the_split_live_and_drops_it(ws: modelyard.Workspace) -> None:
    _pair(ws, "follow")
    # No canary in the spec: the candidate slot is made when the split appears.
    with running_server(ws.config.root, ["follow@production"], "--workers", "2", *POLL) as s:
        assert set(_versions_answering(s, "follow", 20)) == {1}
        set_traffic(ws.registry, "follow", "staging", 50)
        s.wait_for_log({"message": "traffic split", "model": "follow", "percent": 50.0}, count=2)
        wait_until(lambda: set(_versions_answering(s, "follow")) == {1, 2})
        ready = httpx.get(f"{s.url}/readyz").json()["models"]
        assert ready["follow@staging"]["version"] == 2

        clear_traffic(ws.registry, "follow")
        s.wait_for_log({"message": "traffic split", "model": "follow", "percent": None}, count=2)
        assert set(_versions_answering(s, "follow")) == {1}


@asynccontextmanager
async def _serving(
    ws: modelyard.Workspace, model: str | ServeOptions, log: PredictionLog | None = None
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An in-process server that polls only when the test calls ``pool.refresh()``."""
    app = create_app(ws.registry, [model], poll_interval_s=0, prediction_log=log)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app.state.pool, client


async def _answers(client: httpx.AsyncClient, model: str, n: int = 40) -> Counter[int]:
    out: Counter[int] = Counter()
    for i in range(n):
        r = await client.post(f"/v1/models/{model}/predict", json={"a": float(i)})
        out[r.json().get("version", r.status_code)] += 1
    return out


@pytest.mark.anyio
async def test_a_split_overrides_the_spec_canary_until_it_is_cleared(
    ws: modelyard.Workspace,
) -> None:
    _pair(ws, "spec")
    opts = ServeOptions(ref="spec@production", canary=Canary(candidate="staging", percent=100))
    async with _serving(ws, opts) as (pool, client):
        assert set(await _answers(client, "spec")) == {2}
        set_traffic(ws.registry, "spec", "staging", 0)  # 0%: everything to the champion
        assert await pool.refresh()
        assert set(await _answers(client, "spec")) == {1}
        set_traffic(ws.registry, "spec", "staging", 50)
        assert await pool.refresh()
        assert set(await _answers(client, "spec")) == {1, 2}
        set_traffic(ws.registry, "spec", "staging", 0)
        await pool.refresh()
        clear_traffic(ws.registry, "spec")  # the spec's own 100% canary is back
        assert await pool.refresh()
        assert set(await _answers(client, "spec")) == {2}


@pytest.mark.anyio
async def test_a_candidate_that_cannot_serve_leaves_the_champion_answering(
    ws: modelyard.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pickled by reference to a module the server cannot import (see test_serving_policies).
    module = f"gone_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def predict(frame):\n    return frame['a'] * 5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _register(ws, "shaky", _times(1.0), "production")
    _register(ws, "shaky", importlib.import_module(module).predict, "staging")
    sys.path.remove(str(tmp_path))
    monkeypatch.delitem(sys.modules, module)
    wider = pd.DataFrame({"a": [1.0], "b": [2.0]})
    _register(ws, "shaky", _times(3.0), "wider", example=wider)

    async with _serving(ws, "shaky@production") as (pool, client):
        for alias in ("staging", "wider"):  # cannot load; needs a field callers do not send
            set_traffic(ws.registry, "shaky", alias, 100)
            assert not await pool.refresh()
            assert not await pool.refresh()  # tried once, not every poll
            assert set(await _answers(client, "shaky", 10)) == {1}
            assert (await client.get("/readyz")).status_code == 200
        clear_traffic(ws.registry, "shaky")


@pytest.mark.anyio
async def test_a_failing_candidate_is_charged_its_own_errors(
    ws: modelyard.Workspace, tmp_path: Path
) -> None:
    _pair(ws, "charged", candidate=_fails_below_zero)
    log = open_prediction_log(str(tmp_path / "predictions"), spool=tmp_path / "predictions")
    set_traffic(ws.registry, "charged", "staging", 100)
    try:
        async with _serving(ws, "charged@production", log) as (_, client):
            for _ in range(5):
                r = await client.post("/v1/models/charged/predict", json={"a": -1.0})
                assert r.status_code == 500
            bad = await client.post("/v1/models/charged/predict", json={"a": "x"})
            assert bad.status_code == 422  # refused before routing: the champion's
    finally:
        clear_traffic(ws.registry, "charged")
    table = log.read("charged", errors=True)
    rows = sorted(zip(table["status"].to_pylist(), table["version"].to_pylist(), strict=True))
    assert rows == [(422, 1)] + [(500, 2)] * 5


# -- rollouts over real servers ------------------------------------------------------------
@pytest.mark.slow
def test_a_healthy_canary_steps_to_100_and_moves_production(ws: modelyard.Workspace) -> None:
    x = train_diabetes(ws)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(
            run, Ridge(alpha=0.5).fit(x, x["bmi"]), input_example=x.head(20), reference_data=x
        )
    ws.registry.set_alias("diabetes", "staging", ws.registry.register("diabetes", logged).version)
    rows = x.to_dict("records")
    with (
        running_server(ws.config.root, ["diabetes@production"], *POLL) as server,
        Traffic(server, "diabetes", rows, threads=2),
    ):
        result = run_canary(
            ws, "diabetes", steps=(10, 50, 100), interval_s=2, min_requests=3, min_drift_rows=100
        )
        assert result.promoted, result
        wait_until(lambda: set(_versions_answering(server, "diabetes", 10, rows[0])) == {2})

    assert [s.percent for s in result.steps] == [10, 50, 100]
    assert all(s.healthy for s in result.steps)
    shares = [s.values["drift_share"] for s in result.steps]
    assert shares[-1] is not None and shares[-1] <= 0.5  # 100%: enough rows to judge
    assert ws.registry.get("diabetes@production").version == 2
    assert get_traffic(ws.registry, "diabetes") is None
    assert _actions(ws, "diabetes") == ["canary-step"] * 3 + ["canary-promote"]
    promote = release_history(ws.metadata, "diabetes", limit=1)[0]
    assert (promote.from_version, promote.to_version, promote.passed) == (1, 2, True)
    assert [s["percent"] for s in promote.details["steps"]] == [10, 50, 100]


@pytest.mark.slow
def test_a_slow_candidate_is_rolled_back_and_alerted(
    ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _pair(ws, "sluggish", candidate=_times(2.0, sleep_s=0.3))
    with (
        running_server(ws.config.root, ["sluggish@production"], *POLL) as server,
        Traffic(server, "sluggish", [{"a": 1.0}], threads=4),
    ):
        code, out, err = run_cli(
            capsys,
            "release", "canary", "sluggish", "--percent", "50", "--steps", "100",
            "--interval", "2s", "--max-p99-ms", "100", "--min-requests", "2",
            "--sink", "pager", "--sink", "log", "-w", str(ws.config.root),
        )  # fmt: skip
        assert code == 1, (out, err)
        wait_until(lambda: set(_versions_answering(server, "sluggish", 20)) == {1})

    assert "step 1/2: 50%" in out and "breach" in out and "latency_p99_ms" in out
    assert "rolled back" in err and "pager sent" in err
    assert ws.registry.get("sluggish@production").version == 1
    assert get_traffic(ws.registry, "sluggish") is None
    alerts = [
        json.loads(line) for line in (ws.config.root / "alerts.jsonl").read_text().splitlines()
    ]
    mine = [a for a in alerts if a["subject"] == "sluggish@staging"]
    assert len(mine) == 1 and mine[0]["metric"] == "latency_p99_ms"
    assert mine[0]["value"] > 100 and mine[0]["severity"] == "critical"
    assert "rolled back at 50%" in mine[0]["message"] and "latency_p99_ms" in mine[0]["message"]
    assert _actions(ws, "sluggish") == ["canary-step", "canary-rollback"]
    rollback = release_history(ws.metadata, "sluggish", limit=1)[0]
    assert rollback.passed is False and rollback.details["deliveries"]["pager"] == "sent"
    assert rollback.details["steps"][0]["values"]["latency_p99_ms"] > 100


@pytest.mark.slow
def test_a_candidate_without_traffic_is_rolled_back_not_promoted(
    ws: modelyard.Workspace,
) -> None:
    _pair(ws, "quiet")  # no server at all: nothing follows the split
    result = run_canary(ws, "quiet", steps=(50, 100), interval_s=1, min_requests=1)
    assert not result.promoted and len(result.steps) == 1
    assert result.reason is not None and "no traffic" in result.reason
    assert result.deliveries == {"log": "sent"}
    assert ws.registry.get("quiet@production").version == 1
    assert get_traffic(ws.registry, "quiet") is None


# -- interruptions -------------------------------------------------------------------------
def test_ctrl_c_puts_traffic_back_and_is_recorded(ws: modelyard.Workspace) -> None:
    _pair(ws, "interrupted")
    seen: list[float | None] = []

    def interrupt(seconds: float) -> None:
        split = get_traffic(ws.registry, "interrupted")
        seen.append(None if split is None else split.percent)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_canary(ws, "interrupted", steps=(10, 100), interval_s=60, sleep=interrupt)
    assert seen == [10.0]
    assert get_traffic(ws.registry, "interrupted") is None
    assert _actions(ws, "interrupted") == ["canary-step", "canary-aborted"]
    assert release_history(ws.metadata, "interrupted", limit=1)[0].reason == (
        "interrupted (Ctrl-C)"
    )


def test_stop_ends_a_running_canary(
    ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _pair(ws, "stopped")
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    folder = str(ws.config.root)

    def someone_stops(seconds: float) -> None:  # another terminal runs --stop meanwhile
        code, out, _ = run_cli(capsys, "release", "canary", "stopped", "--stop", "-w", folder)
        assert code == 0 and "stopped the canary: 10% of 'stopped' to @staging" in out
        now[0] += timedelta(seconds=seconds)

    result = run_canary(
        ws, "stopped", steps=(10, 100), interval_s=60, clock=lambda: now[0], sleep=someone_stops
    )
    assert result.aborted and not result.promoted and result.reason is not None
    assert "was cleared outside this canary" in result.reason
    assert get_traffic(ws.registry, "stopped") is None
    assert _actions(ws, "stopped") == ["canary-step", "canary-aborted", "canary-aborted"]
    code, out, _ = run_cli(capsys, "release", "canary", "stopped", "--stop", "-w", folder)
    assert code == 0 and "no canary of stopped is running" in out


# -- bad input: one line, nothing moved ----------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "nope"], "has no alias 'nope'"),
        (["--percent", "50", "--steps", "10,100"], "must increase"),
        (["--steps", "10,150"], "each in (0, 100]"),
        (["--candidate", "same"], "already serves"),
        (["--candidate", "wider"], "is not compatible"),
        (["--sink", "pagr"], "alert sink 'pagr' is not declared"),
        (["--interval", "10 minutes"], "interval '10 minutes' is not a duration"),
        (["--candidate", "production"], "both 'production'"),
        ([], "already running (10% of 'bad' to @staging)"),
    ],
)
def test_bad_input_is_one_line_and_moves_nothing(
    ws: modelyard.Workspace,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    if "bad" not in {m.name for m in ws.registry.list()}:
        _pair(ws, "bad")
        ws.registry.set_alias("bad", "same", 1)
        _register(ws, "bad", _times(3.0), "wider", example=pd.DataFrame({"a": [1.0], "b": [2]}))
    if not args:  # a canary of 'bad' is running already
        set_traffic(ws.registry, "bad", "staging", 10)
    try:
        before = len(release_history(ws.metadata, "bad"))
        code, _, err = run_cli(capsys, "release", "canary", "bad", *args, "-w", str(ws.config.root))
    finally:
        after = get_traffic(ws.registry, "bad")
        clear_traffic(ws.registry, "bad")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert after is None or not args
    assert ws.registry.get("bad@production").version == 1
    assert len(release_history(ws.metadata, "bad")) == before


def test_canary_settings_come_from_the_file_and_arguments_win() -> None:
    release = {"canary": {"interval": "30s", "max_p99_ms": 150, "steps": [5, 100]}}
    chosen = canary_settings(release, {"max_p99_ms": 90, "steps": None})
    assert (chosen.interval_s, chosen.max_p99_ms, chosen.steps) == (30.0, 90.0, (5.0, 100.0))
    assert canary_settings({}, {}).steps == (10.0, 50.0, 100.0)
    for section, message in [
        ({"interval": "soon"}, "release.canary.interval 'soon' is not a duration"),
        ({"max_p99": 5}, "release.canary.max_p99: Extra inputs are not permitted"),
        ({"steps": [50, 10]}, "release.canary.steps (50, 10) must increase"),
        ({"max_error_rate": 2}, "release.canary.max_error_rate: Input should be less than"),
    ]:
        with pytest.raises(ConfigError, match="^modelyard.toml: ") as caught:
            parse_canary_config(section)
        assert message in caught.value.message


@pytest.mark.parametrize(
    ("percent", "steps", "expected"),
    [
        (10.0, "10,50,100", [10.0, 50.0, 100.0]),  # the issue's own example
        (10.0, "50,100", [10.0, 50.0, 100.0]),
        (5.0, None, [5.0, 10.0, 50.0, 100.0]),
        (None, "20,100", [20.0, 100.0]),
        (None, None, None),
    ],
)
def test_percent_is_the_first_step_and_steps_the_rest(
    percent: float | None, steps: str | None, expected: list[float] | None
) -> None:
    from modelyard.cli.canary import _steps

    assert _steps(percent, steps, (10.0, 50.0, 100.0)) == expected


def test_release_canary_in_modelyard_toml_is_checked_at_load_and_used(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    with modelyard.Workspace.init(folder) as ws:
        _pair(ws, "configured")
    toml = folder / "modelyard.toml"
    kept = toml.read_text()
    toml.write_text(kept + "\n[release.canary]\nmax_p99 = 5\n")
    with pytest.raises(ConfigError, match="release.canary.max_p99: Extra inputs"):
        modelyard.Workspace(folder).config  # noqa: B018 - reading the config checks it
    toml.write_text(kept + '\n[release.canary]\nsteps = [50]\ninterval = "1s"\nmin_requests = 1\n')
    with modelyard.Workspace(folder) as ws:
        result = run_canary(ws, "configured")  # no server: one step, then "no traffic"
        assert [s.percent for s in result.steps] == [50.0] and not result.promoted
        settings = release_history(ws.metadata, "configured", limit=1)[0].details["settings"]
        assert (settings["interval_s"], settings["min_requests"]) == (1.0, 1)


# -- review fixes: routing ---------------------------------------------------------------
def _column_order(frame: pd.DataFrame) -> dict[str, Any]:
    """An answer that depends on the order of the columns the model is handed."""
    return {"y": frame.iloc[:, 0] * 10 + frame.iloc[:, 1]}


@pytest.mark.anyio
async def test_a_candidate_trained_on_reordered_inputs_answers_as_it_does_alone(
    ws: modelyard.Workspace,
) -> None:
    _register(ws, "order", _column_order, "production", pd.DataFrame({"a": [1.0], "b": [2.0]}))
    _register(ws, "order", _column_order, "staging", pd.DataFrame({"b": [2.0], "a": [1.0]}))
    record = {"a": 1.0, "b": 2.0}
    set_traffic(ws.registry, "order", "staging", 100)
    try:
        async with _serving(ws, "order@production") as (_, client):
            r = await client.post("/v1/models/order/predict", json=[record])
    finally:
        clear_traffic(ws.registry, "order")

    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    alone = ws.registry.load("order@staging").predict(record)
    assert r.json()["predictions"][0]["y"] == alone["y"][0] == 21.0  # b * 10 + a


def _nulls_counted(frame: pd.DataFrame) -> dict[str, Any]:
    return {"y": frame["a"] * 2 + frame.isna().sum(axis=1) * 100}


def _as_text(frame: pd.DataFrame) -> dict[str, Any]:
    return {"y": frame["a"].astype(str)}


NULLABLE_B = Field(name="b", dtype="float64", nullable=True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "model", "inputs", "output", "accepted"),
    [
        ("nullable", _nulls_counted, [NULLABLE_B], "float64", True),
        ("required", _nulls_counted, [Field(name="b", dtype="float64")], "float64", False),
        ("retyped", _as_text, [], "string", False),
    ],
)
async def test_servers_accept_exactly_the_candidates_a_release_accepts(
    ws: modelyard.Workspace,
    case: str,
    model: Callable[[pd.DataFrame], dict[str, Any]],
    inputs: list[Field],
    output: str,
    accepted: bool,
) -> None:
    name = f"agree-{case}"
    _register(ws, name, _times(1.0), "production")
    signature = Signature(
        inputs=Schema.of(Field(name="a", dtype="float64"), *inputs),
        outputs=Schema.of(Field(name="y", dtype=output)),
    )
    with ws.start_run(name) as run:
        logged = ws.registry.log_model(run, model, signature=signature)
    ws.registry.set_alias(name, "staging", ws.registry.register(name, logged).version)
    champion, candidate = (ws.registry.get(f"{name}@{a}") for a in ("production", "staging"))

    set_traffic(ws.registry, name, "staging", 100)
    try:
        async with _serving(ws, f"{name}@production") as (_, client):
            r = await client.post(f"/v1/models/{name}/predict", json=[{"a": 3.0}])
    finally:
        clear_traffic(ws.registry, name)

    assert r.status_code == 200, r.text
    assert (r.json()["version"] == 2) is accepted
    assert (signature_problems(champion.signature, candidate.signature) == []) is accepted
    if accepted:  # the field callers do not send reached the candidate as a null
        assert r.json()["predictions"][0]["y"] == 3.0 * 2 + 100
    else:
        with pytest.raises(InvalidInputError, match="is not compatible"):
            run_canary(ws, name, steps=(100,), interval_s=1)


@pytest.mark.anyio
async def test_a_split_candidate_that_moves_version_counts_as_a_change(
    ws: modelyard.Workspace,
) -> None:
    _pair(ws, "moving")
    third = _register(ws, "moving", _times(3.0), None)
    set_traffic(ws.registry, "moving", "staging", 100)
    try:
        async with _serving(ws, "moving@production") as (pool, client):
            assert set(await _answers(client, "moving", 5)) == {2}
            ws.registry.set_alias("moving", "staging", third)
            assert await pool.refresh()
            assert set(await _answers(client, "moving", 5)) == {3}
            assert not await pool.refresh()
    finally:
        clear_traffic(ws.registry, "moving")


def _batcher_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == "modelyard-batcher")


@pytest.mark.anyio
async def test_a_split_candidate_batcher_goes_with_its_split(ws: modelyard.Workspace) -> None:
    _pair(ws, "retired")
    # Batched, so each variant has a batcher task (user code is unbatched by default).
    opts = ServeOptions(ref="retired@production", timeout_ms=50, max_batch_size=4)
    async with _serving(ws, opts) as (pool, client):
        set_traffic(ws.registry, "retired", "staging", 100)
        assert await pool.refresh()
        assert set(await _answers(client, "retired", 3)) == {2}
        clear_traffic(ws.registry, "retired")
        assert await pool.refresh()
        assert set(await _answers(client, "retired", 3)) == {1}
        assert _batcher_tasks() == 2  # the candidate's lives out its grace (timeout_ms)
        await asyncio.sleep(0.2)
        assert _batcher_tasks() == 1  # the champion's only

        set_traffic(ws.registry, "retired", "staging", 100)  # a new split: a new batcher
        assert await pool.refresh()
        assert set(await _answers(client, "retired", 3)) == {2}
        clear_traffic(ws.registry, "retired")


@pytest.mark.anyio
async def test_servers_ignore_a_split_whose_lease_ran_out(ws: modelyard.Workspace) -> None:
    _pair(ws, "lapsed")
    async with _serving(ws, "lapsed@production") as (pool, client):
        set_traffic(ws.registry, "lapsed", "staging", 100, ttl_s=STALE_AFTER_S)
        assert await pool.refresh()
        assert set(await _answers(client, "lapsed", 5)) == {2}
        set_traffic(ws.registry, "lapsed", "staging", 100, ttl_s=0.001)  # never renewed
        time.sleep(0.01)
        assert await pool.refresh()
        assert set(await _answers(client, "lapsed", 5)) == {1}
    split = get_traffic(ws.registry, "lapsed")
    assert split is not None and split.expired()
    assert stop_canary(ws, "lapsed", actor="oncall") == (
        "100% of 'lapsed' to @staging (its lease had run out: the rollout had died)"
    )


def test_traffic_writes_after_the_first_compare_and_set(workspace: modelyard.Workspace) -> None:
    ws = workspace  # every metadata back end
    _pair(ws, "cas")
    first = set_traffic(ws.registry, "cas", "staging", 10, ttl_s=STALE_AFTER_S)
    assert first.expires_at is not None and first.expires_at - first.updated_at == timedelta(
        seconds=STALE_AFTER_S
    )
    second = set_traffic(ws.registry, "cas", "staging", 50, expect=first, ttl_s=STALE_AFTER_S)
    with pytest.raises(ConflictError, match=r"was changed to 50% of 'cas' to @staging"):
        set_traffic(ws.registry, "cas", "staging", 100, expect=first)
    assert clear_traffic(ws.registry, "cas", expect=first) is None  # not the row it saw
    assert clear_traffic(ws.registry, "cas", expect=second) == second
    with pytest.raises(ConflictError, match="was cleared by someone else"):
        set_traffic(ws.registry, "cas", "staging", 100, expect=second)
    assert get_traffic(ws.registry, "cas") is None  # a cleared split is never recreated
    manual = set_traffic(ws.registry, "cas", "staging", 10)  # by hand: no lease, no expiry
    assert manual.expires_at is None and not manual.expired()
    with pytest.raises(ConflictError, match="already set"):
        claim_traffic(ws.registry, "cas", "staging", 10, ttl_s=STALE_AFTER_S)
    lapsed = set_traffic(ws.registry, "cas", "staging", 20, ttl_s=0.001)
    time.sleep(0.01)
    claimed, replaced = claim_traffic(ws.registry, "cas", "staging", 10, ttl_s=STALE_AFTER_S)
    assert replaced == lapsed and get_traffic(ws.registry, "cas") == claimed


# -- review fixes: rollouts ----------------------------------------------------------------
@pytest.fixture
def healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step judged healthy: for rollouts about what moves, not about judging."""
    from modelyard.release import _canary

    def judge(
        *_: Any, step: int, percent: float, since: datetime, until: datetime, **__: Any
    ) -> StepResult:
        return StepResult(step, percent, since, until, {"requests": 100.0})

    monkeypatch.setattr(_canary, "judge_step", judge)


class FakeTime:
    """A rollout's clock and sleep: sleeping moves the clock (and may act meanwhile)."""

    def __init__(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)
        self.meanwhile = meanwhile

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.meanwhile()


class StopWhileJudging:
    """Progress that runs ``--stop`` while a step is judged (between judging and the next
    write of the split)."""

    def __init__(self, ws: modelyard.Workspace, name: str) -> None:
        self.ws, self.name = ws, name

    def started(self, step: int, of: int, percent: float, interval_s: float) -> None:
        pass

    def waiting(self, remaining_s: float) -> None:
        pass

    def judged(self, result: StepResult) -> None:
        stop_canary(self.ws, self.name, actor="oncall")


@pytest.mark.parametrize("steps", [(10.0, 100.0), (100.0,)], ids=["before-a-step", "last-step"])
def test_a_stop_while_a_step_is_judged_is_never_undone(
    ws: modelyard.Workspace, healthy: None, steps: tuple[float, ...]
) -> None:
    name = f"judged-{len(steps)}"
    _pair(ws, name)
    t = FakeTime()

    result = run_canary(
        ws, name, steps=steps, interval_s=2, progress=StopWhileJudging(ws, name),
        clock=t.clock, sleep=t.sleep,
    )  # fmt: skip

    assert result.aborted and not result.promoted, result
    assert result.reason is not None and "was cleared by someone else" in result.reason
    assert ws.registry.get(f"{name}@production").version == 1
    assert get_traffic(ws.registry, name) is None
    assert _actions(ws, name) == ["canary-step", "canary-aborted", "canary-aborted"]


def test_a_canary_stopped_from_outside_exits_3(
    ws: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    _pair(ws, "outside")

    def stop_once_running() -> None:  # another terminal, while the first step waits
        wait_until(lambda: get_traffic(ws.registry, "outside") is not None)
        stop_canary(ws, "outside", actor="oncall")

    other = threading.Thread(target=stop_once_running)
    other.start()
    try:
        code, out, err = run_cli(
            capsys, "release", "canary", "outside", "--percent", "10", "--steps", "100",
            "--interval", "30s", "-w", str(ws.config.root),
        )  # fmt: skip
    finally:
        other.join()

    assert code == 3, (out, err)
    assert "aborted:" in err and "was cleared outside this canary" in err
    assert ws.registry.get("outside@production").version == 1
    assert get_traffic(ws.registry, "outside") is None


def test_a_running_canary_renews_its_lease(ws: modelyard.Workspace, healthy: None) -> None:
    _pair(ws, "renewed")
    seen: list[Any] = []
    t = FakeTime(lambda: seen.append(get_traffic(ws.registry, "renewed")))

    result = run_canary(ws, "renewed", steps=(100,), interval_s=12, clock=t.clock, sleep=t.sleep)

    assert result.promoted
    assert len(seen) == 12 and all(s is not None for s in seen)
    assert len({s.stamp for s in seen}) == 3  # written, then renewed every 5 s of waiting
    for split in seen:
        assert split.expires_at - split.updated_at == timedelta(seconds=STALE_AFTER_S)


def test_a_new_rollout_takes_over_the_split_of_a_dead_one(
    ws: modelyard.Workspace, healthy: None
) -> None:
    _pair(ws, "orphan")
    claim_traffic(ws.registry, "orphan", "staging", 50, ttl_s=0.001)  # its rollout was killed
    time.sleep(0.01)
    t = FakeTime()

    result = run_canary(ws, "orphan", steps=(100,), interval_s=1, clock=t.clock, sleep=t.sleep)

    assert result.promoted
    assert _actions(ws, "orphan") == ["canary-takeover", "canary-step", "canary-promote"]
    takeover = release_history(ws.metadata, "orphan")[-1]
    assert takeover.reason is not None and "took over 50% of 'orphan' to @staging" in (
        takeover.reason
    )
    records = release_history(ws.metadata, "orphan")
    assert len({r.details["rollout"] for r in records}) == 1  # one rollout's records


def test_ctrl_c_inside_the_promotion_moves_nothing_and_says_so(
    ws: modelyard.Workspace, healthy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.release import _canary

    _pair(ws, "midway")
    real = _canary.write_record

    def interrupted(*args: Any, **kwargs: Any) -> None:
        if kwargs.get("action") == "canary-promote":
            raise KeyboardInterrupt  # after the alias moved, before the commit
        real(*args, **kwargs)

    monkeypatch.setattr(_canary, "write_record", interrupted)
    t = FakeTime()
    with pytest.raises(KeyboardInterrupt):
        run_canary(ws, "midway", steps=(100,), interval_s=1, clock=t.clock, sleep=t.sleep)

    assert ws.registry.get("midway@production").version == 1  # the record agrees:
    assert _actions(ws, "midway") == ["canary-step", "canary-aborted"]
    assert get_traffic(ws.registry, "midway") is None


def test_ctrl_c_after_the_promotion_committed_reports_the_promotion(
    ws: modelyard.Workspace, healthy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pair(ws, "late")
    move = ws.registry.move_alias

    def then_interrupted(*args: Any, **kwargs: Any) -> Any:
        move(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ws.registry, "move_alias", then_interrupted)
    t = FakeTime()
    result = run_canary(ws, "late", steps=(100,), interval_s=1, clock=t.clock, sleep=t.sleep)

    assert result.promoted
    assert ws.registry.get("late@production").version == 2
    assert _actions(ws, "late") == ["canary-step", "canary-promote"]
    assert get_traffic(ws.registry, "late") is None


def test_the_canary_help_states_the_lease() -> None:
    from modelyard.cli.canary import canary

    assert canary.__doc__ is not None and f"after {STALE_AFTER_S:g} s" in canary.__doc__
