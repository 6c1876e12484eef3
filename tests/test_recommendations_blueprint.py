"""The recommendations blueprint end to end, as a new user runs it: `modelyard init
--blueprint recommendations DIR` and `modelyard quickstart` on MovieLens' real ratings
(three nights, the second failing once), then every promise checked on what it left: the
time split of the holdout and of each night, the published lists (no item the user had
seen, the popularity fallback, two nights kept, rollback), retries and alerts, the bias
checks that block or warn, settings refused in one line, Redis, and the local executor.
The pieces (ranking metrics, top-N, bias values) are checked against hand or brute-force
answers. The quickstart runs once for the module (about ten seconds); tests that change a
workspace change a changed of it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import modelyard
from cli_support import run_cli
from modelyard.blueprints.recommendations import _data, _metrics, _topn, parse_settings
from modelyard.blueprints.recommendations._bias import check_bias
from modelyard.blueprints.recommendations._config import BiasSettings
from modelyard.blueprints.recommendations._model import popular_list
from modelyard.blueprints.recommendations._nightly import ALIAS, _publish
from modelyard.blueprints.recommendations._quickstart import JOB, quickstart
from modelyard.blueprints.recommendations._topn import TopN, top_n, top_n_partitioned
from modelyard.contracts import fingerprint
from modelyard.errors import ConfigError, NotFoundError
from modelyard.serving import RecommendationLists
from modelyard.serving._recommendation_rows import view_of

# Today, as the quickstart writes it on its first run.
ANCHOR = datetime.now(UTC).strftime("%Y-%m-%d")
ANCHOR_DAY = datetime.fromisoformat(ANCHOR).replace(tzinfo=UTC)
NIGHTS = 3
FAIL_NIGHT = 2
MODEL = "recommender"
STATE = Path(".modelyard/recommendations/state.json")
ALERTS = Path(".modelyard/recommendations/alerts.jsonl")
NIGHT_NAMES = [f"{ANCHOR_DAY - timedelta(days=NIGHTS - i):%Y-%m-%d}" for i in range(1, NIGHTS + 1)]
# (the nights' names, oldest first: the anchor's is the last)


def _env() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        "COLUMNS": "250",
    }


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=cwd,
    )


def _set(folder: Path, lines: str) -> None:
    """Put ``lines`` into the [blueprint] table of the workspace's modelyard.toml."""
    config = folder / "modelyard.toml"
    text = config.read_text()
    config.write_text(
        text.replace('name = "recommendations"', f'name = "recommendations"\n{lines}')
    )


def _set_bias(folder: Path, key: str, value: str) -> None:
    config = folder / "modelyard.toml"
    lines = config.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
    lines[at] = f"{key} = {value}"
    config.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """init + the quickstart, once, through the command line as a user types them."""
    folder = tmp_path_factory.mktemp("rec") / "movies"
    init = _cli("init", "--blueprint", "recommendations", str(folder))
    assert init.returncode == 0, init.stderr[-3000:]
    assert "anchor = " not in [
        line[:9] for line in (folder / "modelyard.toml").read_text().splitlines()
    ]
    _set(folder, f"nights = {NIGHTS}\nfail_night = {FAIL_NIGHT}")
    ran = _cli("quickstart", "--blueprint", "recommendations", str(folder), "--no-serve")
    assert ran.returncode == 0, ran.stderr[-3000:]
    return folder, ran.stdout


@pytest.fixture
def changed(done: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of the quickstart's workspace, for a test that changes it."""
    target = tmp_path / "copy"
    shutil.copytree(done[0], target)
    return target


def _log() -> pd.DataFrame:
    return _data.load_log(ANCHOR_DAY)


def _slot_end(night: str) -> datetime:
    """A night's slot ends at 02:00 UTC of its day (the job's schedule)."""
    return datetime.fromisoformat(night).replace(hour=2, tzinfo=UTC)


def _night_runs(ws: modelyard.Workspace) -> dict[str, Any]:
    runs = [r for r in ws.runs.search() if r.name.startswith("night ")]
    return {r.tags["recommendations.night"]: r for r in runs}


# -- the quickstart ---------------------------------------------------------------------


def test_the_quickstart_names_the_holdout_metrics_and_what_it_serves(done: tuple) -> None:
    folder, out = done
    flat = " ".join(out.split())
    assert "holdout (newest 365 days" in flat
    for metric in ("precision@10", "recall@10", "NDCG@10", "coverage"):
        assert metric in flat
    assert f"{NIGHTS} night(s) run: {NIGHTS} published (1 after a retry)" in flat
    assert f"serving night {ANCHOR}" in flat
    assert "/v1/recommendations/" in flat
    # The anchor is written into modelyard.toml (the settings read it back).
    with modelyard.Workspace(folder) as ws:
        from modelyard.blueprints.recommendations import settings_of

        assert settings_of(ws).anchor == ANCHOR_DAY
    assert any(
        line.startswith(f'anchor = "{ANCHOR}"')
        for line in (folder / "modelyard.toml").read_text().splitlines()
    )


def test_a_second_run_redoes_neither_the_evaluation_nor_a_night(done: tuple) -> None:
    folder, _ = done
    state = json.loads((folder / STATE).read_text())
    assert state["nights"] == NIGHTS
    with modelyard.Workspace(folder) as ws:
        runs = len(ws.runs.search())
        from modelyard.jobs import JobHistory

        history = JobHistory(ws.metadata)
        job_runs = len(history.runs(JOB))
        versions = len(ws.registry.versions(MODEL))
        result = quickstart(ws)
        assert len(ws.runs.search()) == runs
        assert len(history.runs(JOB)) == job_runs == NIGHTS
        assert len(ws.registry.versions(MODEL)) == versions
        assert result["version"].tags["night"] == ANCHOR
    again = json.loads((folder / STATE).read_text())
    assert again["evaluation"] == state["evaluation"] and again["nights"] == NIGHTS


# -- the time split -----------------------------------------------------------------------


def test_the_evaluation_trains_only_on_ratings_before_the_holdout(done: tuple) -> None:
    folder, _ = done
    state = json.loads((folder / STATE).read_text())
    log = _log()
    end = log["ts"].max().ceil("D")
    start = end - pd.Timedelta(days=365)
    train = log[log["ts"] < start][["user_id", "movie_id", "ts"]].reset_index(drop=True)
    holdout = log[log["ts"] >= start]
    assert len(train) and len(holdout) and train["ts"].max() < start <= holdout["ts"].min()
    with modelyard.Workspace(folder) as ws:
        run = ws.runs.get(state["evaluation"]["run_id"])
    sets = {d["name"]: d for d in run.datasets}
    # The logged training set is exactly the ratings before the holdout's start.
    assert sets["interactions"]["rows"] == len(train)
    assert sets["interactions"]["fingerprint"] == fingerprint(train)
    assert sets["holdout"]["rows"] == len(holdout) == len(log) - len(train)
    assert sets["holdout"]["context"] == "validation"


def test_each_night_learns_from_the_ratings_before_its_slot_end_only(done: tuple) -> None:
    folder, _ = done
    log = _log()
    with modelyard.Workspace(folder) as ws:
        runs = _night_runs(ws)
    assert sorted(runs) == NIGHT_NAMES
    for night, run in runs.items():
        end = _slot_end(night)
        seen = log[log["ts"] < end][["user_id", "movie_id", "ts"]].reset_index(drop=True)
        [dataset] = run.datasets
        assert dataset["rows"] == len(seen)
        assert dataset["fingerprint"] == fingerprint(seen)
        assert run.metrics["interactions"] == len(seen)


def test_interactions_leave_out_a_rating_at_the_slot_end_and_count_a_repeat_once() -> None:
    until = datetime(2026, 1, 10, 2, tzinfo=UTC)
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3],
            "movie_id": [10, 10, 20, 30, 40],
            "ts": pd.to_datetime(
                [
                    "2026-01-01",
                    "2026-01-02",
                    "2026-01-10 01:59:59",
                    "2026-01-10 02:00:00",  # at the slot end: not yet happened
                    "2026-01-11",
                ],
                utc=True,
                format="ISO8601",
            ),
        }
    )
    data = _data.interactions(log, until)
    assert data.users.tolist() == [1] and data.items.tolist() == [10, 20]
    assert data.rows == 3
    assert data.matrix.toarray().tolist() == [[1.0, 1.0]]
    with pytest.raises(Exception, match="no ratings before"):
        _data.interactions(log, datetime(2025, 1, 1, tzinfo=UTC))


# -- metrics ------------------------------------------------------------------------------


def test_ranking_metrics_on_a_hand_made_case() -> None:
    lists = TopN(
        np.array([[0, 1, 2], [3, -1, -1], [4, 5, 6]], dtype=np.int32),
        np.zeros((3, 3), dtype=np.float32),
    )
    # user 0: one hit (item 1 at rank 2) of two relevant; user 1: none; user 2: hits at
    # ranks 1 and 3 of two relevant; a user without truth (none here) is not judged.
    truth = {0: {1, 7}, 1: {9}, 2: {4, 6}}
    got = _metrics.ranking(lists, truth, 3, catalogue=10)
    d = [1 / math.log2(2), 1 / math.log2(3), 1 / math.log2(4)]
    precision = (1 / 3 + 0 + 2 / 3) / 3
    recall = (1 / 2 + 0 + 2 / 2) / 3
    ndcg = (d[1] / (d[0] + d[1]) + 0 + (d[0] + d[2]) / (d[0] + d[1])) / 3
    assert got.precision == pytest.approx(precision)
    assert got.recall == pytest.approx(recall)
    assert got.ndcg == pytest.approx(ndcg)
    assert got.coverage == pytest.approx(7 / 10)  # items 0-6; the -1 padding is no item
    assert got.users == 3 and got.k == 3
    assert set(got.as_metrics("pop_")) == {
        "pop_precision_at_3",
        "pop_recall_at_3",
        "pop_ndcg_at_3",
        "pop_coverage",
    }


def test_relevant_items_are_new_to_the_user_and_known_to_the_model() -> None:
    until = datetime(2026, 1, 10, tzinfo=UTC)
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2],
            "movie_id": [10, 20, 20, 30],
            "ts": pd.to_datetime(["2026-01-01"] * 4, utc=True),
        }
    )
    data = _data.interactions(log, until)
    holdout = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 99],
            "movie_id": [10, 30, 77, 10, 10],  # seen; new; unknown item; new; unknown user
        }
    )
    assert _metrics.relevant(data, holdout) == {0: {2}, 1: {0}}


# -- top-N --------------------------------------------------------------------------------


def _brute(users: np.ndarray, items: np.ndarray, seen: np.ndarray, k: int) -> list[list[int]]:
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    out = []
    for row, mask in zip(scores, seen, strict=True):
        order = [int(i) for i in np.argsort(-row, kind="stable") if not mask[i]]
        out.append(order[:k])
    return out


@pytest.fixture
def factors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    users = rng.normal(size=(53, 6)).astype(np.float32)
    items = rng.normal(size=(41, 6)).astype(np.float32)
    seen = rng.random((53, 41)) < 0.3
    seen[5, :] = True
    seen[5, [3, 8]] = False  # user 5 has two unseen items left
    seen[6, :] = True  # user 6 has seen everything
    return users, items, seen


@pytest.mark.parametrize("block", [1, 7, 53, 2048])
def test_top_n_is_the_brute_force_ranking_of_unseen_items(factors: tuple, block: int) -> None:
    users, items, seen = factors
    k = 10
    got = top_n(users, items, sp.csr_matrix(seen.astype(np.float32)), k, block=block)
    expected = _brute(users, items, seen, k)
    assert got.items.shape == got.scores.shape == (53, k)
    for row in range(53):
        real = [int(i) for i in got.items[row] if i >= 0]
        assert real == expected[row], row  # the same items, best first (no ties: floats)
        assert not seen[row, real].any()
        finite = got.scores[row][np.isfinite(got.scores[row])]
        assert (np.diff(finite) <= 0).all()
        assert (got.items[row][len(real) :] == -1).all()
    assert got.items[5].tolist()[2:] == [-1] * (k - 2) and sorted(got.items[5][:2]) == [3, 8]
    assert (got.items[6] == -1).all() and np.isneginf(got.scores[6]).all()


def test_top_n_selects_a_few_rows_at_a_time_with_the_same_answer(
    factors: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    users, items, seen = factors
    csr = sp.csr_matrix(seen.astype(np.float32))
    whole = top_n(users, items, csr, 10)
    monkeypatch.setattr(_topn, "SELECT_BYTES", 8 * 41 * 3)  # three rows per selection
    few = top_n(users, items, csr, 10, block=7)
    assert (few.items == whole.items).all()
    assert np.array_equal(few.scores, whole.scores)


def test_top_n_without_seen_items_and_with_k_beyond_the_catalogue(factors: tuple) -> None:
    users, items, _ = factors
    got = top_n(users, items, None, 100)
    assert got.items.shape == (53, 41)  # k is capped at the catalogue
    nothing = np.zeros((53, 41), dtype=bool)
    assert got.items.tolist() == _brute(users, items, nothing, 41)


@pytest.mark.parametrize("partitions", [None, 3, 100])
def test_partitioned_top_n_on_local_workers_equals_top_n(
    factors: tuple, partitions: int | None
) -> None:
    from modelyard.backends.executors import open_executor

    users, items, seen = factors
    csr = sp.csr_matrix(seen.astype(np.float32))
    expected = top_n(users, items, csr, 10)
    executor = open_executor("local")
    try:
        got = top_n_partitioned(executor, users, items, csr, 10, partitions=partitions, block=7)
        empty = top_n_partitioned(executor, users[:0], items, csr[:0], 10, partitions=2)
    finally:
        executor.close()
    assert (got.items == expected.items).all()
    # Blocks of another shape take another BLAS kernel (a block of one user is a
    # matrix-vector product): the same scores to float32's last bits, not bit for bit.
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
    assert empty.items.shape == (0, 10)


@pytest.mark.slow
def test_partitioned_top_n_on_ray_equals_top_n(factors: tuple, ray_executor: Any) -> None:
    users, items, seen = factors
    csr = sp.csr_matrix(seen.astype(np.float32))
    expected = top_n(users, items, csr, 10)
    got = top_n_partitioned(ray_executor, users, items, csr, 10, partitions=4)
    assert (got.items == expected.items).all()


# -- the nights ---------------------------------------------------------------------------


def test_each_night_registers_a_version_and_production_follows_the_published_one(
    done: tuple,
) -> None:
    folder, _ = done
    with modelyard.Workspace(folder) as ws:
        versions = ws.registry.versions(MODEL)
        nights = {v.tags["night"]: v for v in versions if "night" in v.tags}
        assert sorted(nights) == NIGHT_NAMES
        assert [v.tags.get("holdout") for v in versions if "night" not in v.tags] == ["true"]
        production = ws.registry.get(f"{MODEL}@{ALIAS}")
        assert production.version == nights[ANCHOR].version
        current = RecommendationLists(ws.online).current(MODEL)
        runs = _night_runs(ws)
    assert current is not None and current.night == ANCHOR
    assert current.version == production.version
    for night, run in runs.items():
        assert run.tags["recommendations.verdict"] == "published"
        assert run.tags["recommendations.published"] == night
        assert nights[night].run_id == run.run_id


def test_the_published_lists_hold_no_item_the_user_rated_before_the_night(
    done: tuple,
) -> None:
    folder, _ = done
    log = _log()
    before = log[log["ts"] < _slot_end(ANCHOR)]
    seen = before.groupby("user_id")["movie_id"].agg(set).to_dict()
    with modelyard.Workspace(folder) as ws:
        lists = RecommendationLists(ws.online)
        current = lists.current(MODEL)
        assert current is not None and current.k == 20 and current.users == len(seen)
        for user, rated in seen.items():
            got = lists.read(int(user), k=20, model=MODEL)
            assert not got.fallback and got.publication.night == ANCHOR
            assert len(got.items) == 20 and len(set(got.items)) == 20
            assert not rated & set(got.items), user
            assert got.scores == sorted(got.scores, reverse=True)
        # A user the night did not score: the popularity list, flagged.
        stranger = lists.read(10**9, k=10, model=MODEL)
    assert stranger.fallback
    data = _data.interactions(log, _slot_end(ANCHOR))
    popular, shares = popular_list(data, 20)
    assert stranger.items == popular[:10].tolist()
    assert stranger.scores == pytest.approx(shares[:10].tolist())


def test_a_published_list_leads_back_to_the_model_version_that_scored_it(done: tuple) -> None:
    """The lists' scores are the registered model's answers for those pairs, and the
    quickstart's example is the newest rating's user and their best item."""
    folder, _ = done
    user = int(_log()["user_id"].iloc[-1])
    with modelyard.Workspace(folder) as ws:
        got = RecommendationLists(ws.online).read(user, k=10, model=MODEL)
        version = ws.registry.get(f"{MODEL}@{ALIAS}")
        assert got.publication.version == version.version
        model = ws.registry.load(f"{MODEL}@{ALIAS}")
        frame = pd.DataFrame({"user_id": [user] * 10, "movie_id": got.items})
        scores = model.predict(frame)["score"].tolist()
        result = quickstart(ws)
    assert scores == pytest.approx(got.scores, rel=1e-5)
    assert result["example"] == {"user_id": user, "movie_id": got.items[0]}
    assert result["reads"] == [f"/v1/recommendations/{user}?k=10"]
    assert version.lineage["datasets"][0]["name"] == "interactions"


def test_two_nights_stay_readable_and_the_older_ones_are_dropped(done: tuple) -> None:
    folder, _ = done
    with modelyard.Workspace(folder) as ws:
        current = RecommendationLists(ws.online).current(MODEL)
        assert current is not None
        assert current.kept_nights == (ANCHOR, NIGHT_NAMES[-2])
        assert current.previous_night == NIGHT_NAMES[-2]
        from modelyard.serving._recommendation_rows import POPULAR as _POPULAR

        oldest = ws.online.read(view_of(MODEL, NIGHT_NAMES[0]), [_POPULAR])[0]
        kept = ws.online.read(view_of(MODEL, NIGHT_NAMES[-2]), [_POPULAR])[0]
    assert oldest is None and kept is not None


def test_a_rollback_brings_back_the_night_before_and_reads_answer_from_it(changed: Path) -> None:
    user = int(_log()["user_id"].iloc[-1])
    with modelyard.Workspace(changed) as ws:
        lists = RecommendationLists(ws.online)
        newest = lists.read(user, k=10, model=MODEL)
        back = lists.rollback(MODEL)
        assert back.night == NIGHT_NAMES[-2]
        got = lists.read(user, k=10, model=MODEL)
        assert got.publication.night == NIGHT_NAMES[-2] and not got.fallback
        row = ws.online.read(view_of(MODEL, NIGHT_NAMES[-2]), [_user_key(user)])[0]
        from modelyard.serving._recommendation_rows import decode_list

        assert row is not None and got.items == decode_list(row[1], 10)[0]
        assert got.items != newest.items  # another night's model: another list
        nights = {v.tags.get("night"): v.version for v in ws.registry.versions(MODEL)}
        assert got.publication.version == nights[NIGHT_NAMES[-2]]
        assert lists.current().night == NIGHT_NAMES[-2]  # the newest of any model, too
        # One night back only: the one before it was dropped.
        with pytest.raises(NotFoundError, match="no earlier night kept"):
            lists.rollback(MODEL)


def test_the_cli_rollback_moves_the_production_alias_back_with_the_lists(
    changed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with modelyard.Workspace(changed) as ws:
        nights = {v.tags.get("night"): v.version for v in ws.registry.versions(MODEL)}
        assert ws.registry.get(f"{MODEL}@{ALIAS}").version == nights[NIGHT_NAMES[-1]]
    code, out, err = run_cli(
        capsys, "recommendations", "rollback", "--model", MODEL, "-w", str(changed)
    )
    assert code == 0, err
    assert f"{MODEL}@{ALIAS} moved back to version {nights[NIGHT_NAMES[-2]]}" in out
    with modelyard.Workspace(changed) as ws:
        # The predict route and the read API answer from one version again.
        assert ws.registry.get(f"{MODEL}@{ALIAS}").version == nights[NIGHT_NAMES[-2]]
        current = RecommendationLists(ws.online).current(MODEL)
        assert current is not None and current.version == nights[NIGHT_NAMES[-2]]


def _user_key(user: int) -> bytes:
    from modelyard.serving._recommendation_rows import user_key

    return user_key(user)


# -- retries and failures -----------------------------------------------------------------


def test_the_fail_night_is_retried_and_published(done: tuple) -> None:
    folder, _ = done
    from modelyard.jobs import JobHistory

    with modelyard.Workspace(folder) as ws:
        runs = sorted(JobHistory(ws.metadata).runs(JOB), key=lambda r: r.logical_date)
        night_runs = _night_runs(ws)
    assert [r.status for r in runs] == ["success"] * NIGHTS
    assert [r.attempts for r in runs] == [2 if i == FAIL_NIGHT else 1 for i in range(1, NIGHTS + 1)]
    retried = runs[FAIL_NIGHT - 1]
    assert "injected failure on the first attempt" in retried.log
    assert retried.trigger == "replay"
    night = NIGHT_NAMES[FAIL_NIGHT - 1]
    assert night_runs[night].tags["recommendations.published"] == night
    # A night published after its retry is no failure: no job alert was sent.
    alerts = folder / ALERTS
    fired = alerts.read_text().splitlines() if alerts.exists() else []
    assert not [line for line in fired if f"job:{JOB}" in line]


def test_a_night_before_the_log_is_refused_in_one_line_and_a_backfill_alerts(
    changed: Path,
) -> None:
    ran = _cli("jobs", "run", JOB, "--date", "1990-01-01", "-w", str(changed))
    assert ran.returncode == 1
    assert "Traceback" not in ran.stdout + ran.stderr
    lines = [line for line in ran.stderr.splitlines() if "no ratings before" in line]
    assert lines == [
        "InvalidInputError: no ratings before 1990-01-02 02:00; the log begins "
        + lines[0].split("the log begins ")[1]
    ]
    assert "give a later night" in lines[0]
    # A manual run the job refused was the person at the prompt's: no alert for it.
    alerts = changed / ALERTS
    before = alerts.read_text().splitlines() if alerts.exists() else []
    assert not any("1990" in line for line in before)
    # The same night in a backfill (no one at the prompt) ends failed, and alerts.
    ran = _cli(
        "jobs", "backfill", JOB, "--start", "1990-01-01", "--end", "1990-01-01", "-w", str(changed)
    )
    assert "1 failed" in ran.stdout + ran.stderr
    fired = [json.loads(line) for line in alerts.read_text().splitlines()]
    job_alerts = [a for a in fired if a["rule"] == f"job:{JOB}"]
    assert len(job_alerts) == 1
    assert "failed" in job_alerts[0]["summary"] and "no ratings before" in job_alerts[0]["summary"]
    with modelyard.Workspace(changed) as ws:
        current = RecommendationLists(ws.online).current(MODEL)
    assert current is not None and current.night == ANCHOR  # nothing else changed


# -- bias -----------------------------------------------------------------------------------


def test_a_night_that_breaches_a_bias_check_is_blocked_and_then_warned(changed: Path) -> None:
    user = int(_log()["user_id"].iloc[-1])
    after = f"{ANCHOR_DAY + timedelta(days=1):%Y-%m-%d}"  # the night after the anchor's
    _set_bias(changed, "min_coverage", "0.9")
    with modelyard.Workspace(changed) as ws:
        live = RecommendationLists(ws.online).read(user, model=MODEL)
        production = ws.registry.get(f"{MODEL}@{ALIAS}").version
    ran = _cli("jobs", "run", JOB, "--date", ANCHOR, "-w", str(changed))
    assert ran.returncode == 1
    assert "Traceback" not in ran.stdout + ran.stderr
    assert "BlockedError" in ran.stderr and "coverage" in ran.stderr
    with modelyard.Workspace(changed) as ws:
        lists = RecommendationLists(ws.online)
        still = lists.read(user, model=MODEL)
        assert still.publication.night == ANCHOR and still.items == live.items
        assert ws.registry.get(f"{MODEL}@{ALIAS}").version == production
        run = _night_runs(ws)[after]
        assert run.tags["recommendations.verdict"] == "blocked"
        assert "recommendations.published" not in run.tags
        assert "bias.json" in {a["path"] for a in run.artifacts}
        digest = next(a["digest"] for a in run.artifacts if a["path"] == "bias.json")
        report = json.loads(ws.artifacts.get(digest))
    assert report["night"] == after and report["verdict"] == "blocked"
    coverage = next(c for c in report["checks"] if c["name"] == "coverage")
    assert not coverage["passed"] and coverage["threshold"] == 0.9
    assert run.metrics["bias.coverage"] == pytest.approx(coverage["value"])
    fired = [json.loads(line) for line in (changed / ALERTS).read_text().splitlines()]
    bias = [a for a in fired if a["rule"] == f"{MODEL}-bias"]
    assert len(bias) == 1 and "blocked" in bias[0]["summary"] and after in bias[0]["summary"]
    assert bias[0]["severity"] == "error"

    # on_breach = "warn": the same night is published, and alerts with a warning.
    _set_bias(changed, "on_breach", '"warn"')
    ran = _cli("jobs", "run", JOB, "--date", ANCHOR, "-w", str(changed))
    assert ran.returncode == 0, ran.stderr[-3000:]
    with modelyard.Workspace(changed) as ws:
        now = RecommendationLists(ws.online).read(user, model=MODEL)
        assert now.publication.night == after
        warned = [r for r in ws.runs.search() if r.tags.get("recommendations.night") == after]
        verdicts = sorted(r.tags["recommendations.verdict"] for r in warned)
        assert verdicts == ["blocked", "warned"]
        assert ws.registry.get(f"{MODEL}@{ALIAS}").tags["night"] == after
    fired = [json.loads(line) for line in (changed / ALERTS).read_text().splitlines()]
    bias = [a for a in fired if a["rule"] == f"{MODEL}-bias"]
    assert len(bias) == 2 and "warning" in bias[1]["summary"]
    assert bias[1]["severity"] == "warning"


def _lists(rows: list[list[int]]) -> TopN:
    items = np.array(rows, dtype=np.int32)
    return TopN(items, np.zeros(items.shape, dtype=np.float32))


COUNTS = np.array([40, 10, 10, 10, 10, 5, 5, 5, 3, 2], dtype=np.float64)
GENRES = [["A"]] * 5 + [["B", "C"]] * 5  # A: half the catalogue; B, C: a quarter each


def test_bias_values_on_a_hand_made_case() -> None:
    # Slots shown: 0, 1, 5, 0, 3 (the padding is no slot).
    lists = _lists([[0, 1, 5], [0, 3, -1]])
    report = check_bias(lists, COUNTS, GENRES, BiasSettings(), depth=3)
    # The top 10% is item 0: 2 of 5 slots, 40 of 100 interactions -> lift 1.
    assert report.popularity["top_items"] == 1
    assert report.popularity["recommended_share"] == pytest.approx(0.4)
    assert report.popularity["interaction_share"] == pytest.approx(0.4)
    assert report.popularity["lift"] == pytest.approx(1.0)
    assert report.coverage["recommended_items"] == 4 and report.coverage["share"] == pytest.approx(
        0.4
    )
    groups = {g["group"]: g for g in report.groups}
    # A: 4 of 5 slots over half the catalogue; B and C: half of one slot each over a quarter.
    assert groups["A"]["exposure_share"] == pytest.approx(0.8)
    assert groups["A"]["ratio"] == pytest.approx(1.6)
    assert groups["B"]["ratio"] == pytest.approx(0.4) and groups["C"]["ratio"] == pytest.approx(0.4)
    assert report.verdict == "published" and report.breaches == []
    metrics = report.metrics()
    assert metrics["bias.popularity_lift"] == pytest.approx(1.0)
    assert metrics["bias.coverage"] == pytest.approx(0.4)


def test_the_exposure_value_is_the_group_closest_to_a_bound_when_all_pass() -> None:
    lists = _lists([[0, 1, 5], [0, 3, -1]])
    # Ratios A 1.6, B 0.4, C 0.4 inside [0.05, 20]: B (and C) are nearest a bound (0.05).
    report = check_bias(lists, COUNTS, GENRES, BiasSettings(), depth=3)
    assert report.verdict == "published"
    assert report.metrics()["bias.group_exposure"] == pytest.approx(0.4)
    assert "furthest: B 0.4)" in report.checks[2].detail


def test_each_bias_check_breaches_on_its_threshold() -> None:
    lists = _lists([[0, 1, 5], [0, 3, -1]])
    strict = BiasSettings(
        max_popularity_lift=0.9, min_coverage=0.5, min_exposure_ratio=0.5, max_exposure_ratio=1.5
    )
    report = check_bias(lists, COUNTS, GENRES, strict, depth=3)
    assert [c.name for c in report.breaches] == ["popularity_lift", "coverage", "group_exposure"]
    assert report.verdict == "blocked"
    exposure = report.breaches[2]
    assert exposure.value == pytest.approx(0.4)  # B (or C): further out than A's 1.6
    assert "A 1.6," in exposure.detail and "B 0.4," in exposure.detail
    warned = check_bias(lists, COUNTS, GENRES, strict.model_copy(update={"on_breach": "warn"}))
    assert warned.verdict == "warned"
    # A genre under min_group_share is not checked: only A (half the catalogue) is.
    only_a = BiasSettings(min_exposure_ratio=0.5, max_exposure_ratio=2.0, min_group_share=0.3)
    assert check_bias(lists, COUNTS, GENRES, only_a, depth=3).verdict == "published"
    # depth: only the first item of each list counts (items 0 and 0: all popular).
    shallow = check_bias(lists, COUNTS, GENRES, BiasSettings(), depth=1)
    assert shallow.popularity["lift"] == pytest.approx(1.0 / 0.4)
    assert shallow.coverage["recommended_items"] == 1


# -- settings mistakes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("k = 0", "blueprint.k: Input should be greater than or equal to 1"),
        ("nights = 3\nfail_night = 4", "fail_night 4 is after the 3 nights replayed"),
        ("nightz = 3", "blueprint.nightz: unknown key (did you mean 'nights'?); the keys are"),
        ("nights = true", "blueprint.nights: Input should be a valid integer"),
        ('anchor = "2099-01-01"', "2099-01-01 is in the future"),
    ],
    ids=["k", "fail_night", "unknown", "nights-bool", "future-anchor"],
)
def test_a_settings_mistake_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, message: str
) -> None:
    folder = tmp_path / "bad"
    from modelyard.blueprints import write_template

    write_template("recommendations", folder)
    _set(folder, lines)
    code, out, err = run_cli(
        capsys, "quickstart", "--blueprint", "recommendations", str(folder), "--no-serve"
    )
    assert code == 2
    assert message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert not (folder / STATE).exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("on_breach", '"maybe"', "blueprint.bias.on_breach: Input should be 'block' or 'warn'"),
        (
            "min_exposure_ratio",
            "10.0",
            "min_exposure_ratio 10.0 must be below max_exposure_ratio 10.0",
        ),
        ("min_coverage", "1.5", "blueprint.bias.min_coverage"),
    ],
)
def test_a_bias_settings_mistake_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, message: str
) -> None:
    from modelyard.blueprints import write_template

    folder = tmp_path / "bad"
    write_template("recommendations", folder)
    _set_bias(folder, key, value)
    code, out, err = run_cli(
        capsys, "quickstart", "--blueprint", "recommendations", str(folder), "--no-serve"
    )
    assert code == 2 and message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_bias_key_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="blueprint.bias.floor: unknown key") as raised:
        parse_settings({"name": "recommendations", "bias": {"floor": 1}})
    assert "on_breach" in raised.value.message and "\n" not in raised.value.message


def test_a_changed_factorisation_is_refused_after_the_first_run(
    changed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = (changed / STATE).read_text()
    _set(changed, "factors = 32")
    code, out, err = run_cli(
        capsys, "quickstart", "--blueprint", "recommendations", str(changed), "--no-serve"
    )
    assert code == 2 and "Traceback" not in err + out
    assert "set up with factors = 64 (now 32)" in err
    assert (changed / STATE).read_text() == state


def test_an_unknown_executor_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.blueprints import write_template

    folder = tmp_path / "exec"
    write_template("recommendations", folder)
    code, out, err = run_cli(
        capsys,
        "quickstart",
        "--blueprint",
        "recommendations",
        str(folder),
        "--no-serve",
        "--executor",
        "nonsense",
    )
    assert code == 2 and "executor 'nonsense' is not known; use one of: local, ray" in err
    assert "Traceback" not in err + out
    assert not (folder / STATE).exists()
    assert "\nanchor = " not in (folder / "modelyard.toml").read_text()  # the file as it was
    with modelyard.Workspace(folder) as ws:
        assert ws.runs.search() == []


# -- Redis ------------------------------------------------------------------------------------


def test_a_redis_that_is_down_is_one_line_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.blueprints import write_template

    folder = tmp_path / "down"
    write_template("recommendations", folder)
    config = folder / "modelyard.toml"
    config.write_text(config.read_text() + '\n[online]\nurl = "redis://127.0.0.1:1/0"\n')
    code, out, err = run_cli(
        capsys, "quickstart", "--blueprint", "recommendations", str(folder), "--no-serve"
    )
    assert code == 2 and "cannot reach the online store at redis://127.0.0.1:1/0" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert not (folder / STATE).exists()
    assert "\nanchor = " not in config.read_text()  # the file as it was
    with modelyard.Workspace(folder, online_url=f"sqlite:///{tmp_path / 'x.db'}") as ws:
        assert ws.runs.search() == []


def test_the_application_publishes_to_redis_and_reads_back(tmp_path: Path, redis_url: str) -> None:
    import redis

    from modelyard.blueprints import write_template

    folder = tmp_path / "redis"
    write_template("recommendations", folder)
    _set(folder, "nights = 2\nfail_night = 0")
    config = folder / "modelyard.toml"
    config.write_text(config.read_text() + f'\n[online]\nurl = "{redis_url}"\n')
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # database 15 is the tests' own
    try:
        with modelyard.Workspace(folder) as ws:
            result = quickstart(ws)
            user = int(result["example"]["user_id"])
            lists = RecommendationLists(ws.online)
            got = lists.read(user, k=10, model=MODEL)
            assert got.publication.night == ANCHOR and not got.fallback
            assert got.items[0] == result["example"]["movie_id"]
            assert lists.read(10**9, k=10).fallback
            assert any(b"recommendations/" + MODEL.encode() in k for k in client.keys())
        # Another process (a fresh client of the store) reads the same rows.
        with modelyard.Workspace(folder) as ws:
            again = RecommendationLists(ws.online).read(user, k=10, model=MODEL)
            assert again.items == got.items
    finally:
        client.flushdb()


# -- the executor -----------------------------------------------------------------------------


def test_the_local_executor_in_the_jobs_params_publishes_the_same_lists(changed: Path) -> None:
    log = _log()
    users = sorted(int(u) for u in log["user_id"].unique()[:60])
    with modelyard.Workspace(changed) as ws:
        lists = RecommendationLists(ws.online)
        inline = {u: lists.read(u, k=20, model=MODEL).items for u in users}
    config = changed / "modelyard.toml"
    config.write_text(
        config.read_text().replace(
            'params = { executor = "inline" }', 'params = { executor = "local" }'
        )
    )
    assert 'executor = "local"' in config.read_text()
    # The anchor's night again (its slot is the day before), ranked on local workers.
    day_before = f"{ANCHOR_DAY - timedelta(days=1):%Y-%m-%d}"
    ran = _cli("jobs", "run", JOB, "--date", day_before, "-w", str(changed))
    assert ran.returncode == 0, ran.stderr[-3000:]
    with modelyard.Workspace(changed) as ws:
        lists = RecommendationLists(ws.online)
        current = lists.current(MODEL)
        assert current is not None and current.night == ANCHOR and "~" in current.edition
        local = {u: lists.read(u, k=20, model=MODEL).items for u in users}
    assert local == inline


# -- a padded list is never published ---------------------------------------------------------


def test_a_user_who_has_seen_almost_everything_is_not_served_item_minus_one(
    tmp_path: Path,
) -> None:
    from modelyard.backends.online import open_online

    log = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "movie_id": [10, 20, 30, 10],
            "ts": pd.to_datetime(["2026-01-01"] * 4, utc=True),
        }
    )
    data = _data.interactions(log, datetime(2026, 1, 2, tzinfo=UTC))
    factors = np.ones((2, 2), dtype=np.float32), np.ones((3, 2), dtype=np.float32)
    ranked = top_n(*factors, data.matrix, 2)
    assert ranked.items[0].tolist() == [-1, -1]  # user 1 has seen all three items
    settings = parse_settings({"name": "recommendations", "k": 2})

    class _Ws:
        online = open_online(f"sqlite:///{tmp_path / 'online.db'}")

    _Ws.online.open()
    try:
        _publish(_Ws, settings, "2026-01-02", data, ranked, 1)  # type: ignore[arg-type]
        got = RecommendationLists(_Ws.online).read(1, k=2, model=MODEL)
    finally:
        _Ws.online.close()
    assert -1 not in got.items
