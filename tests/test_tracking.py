"""Tracking: what a run records, how it reads back, and how runs are searched.

Every test runs on both metadata back ends (the ``workspace`` fixture) unless it is
about something the back end cannot change (seeding NumPy).
"""

from __future__ import annotations

import json
import platform
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn

import modelyard
from git_support import git
from modelyard.errors import ConflictError, InvalidInputError, NotFoundError
from modelyard.tracking import _seed

FRAME = pd.DataFrame(
    {"x": [0.5, 1.5, 2.5], "n": [1, 2, 3], "s": ["a", "b", "c"], "ok": [True, False, True]}
)


@pytest.fixture(autouse=True)
def _unseeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no global seed; seed_everything's PYTHONHASHSEED is undone."""
    monkeypatch.setattr(_seed, "_current", None)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)


@pytest.fixture
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder that is not inside any git repository."""
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(folder)
    return folder


# -- what a run records -------------------------------------------------------------------


def test_params_tags_and_metrics_round_trip(workspace: modelyard.Workspace) -> None:
    with workspace.start_run(
        "train", params={"C": 1.0, "kernel": "rbf", "layers": [64, 32]}, tags={"team": "a"}
    ) as run:
        run.log_param("max_iter", 200)
        run.log_params({"solver": "lbfgs"})
        run.set_tag("stage", "dev")
        run.set_tags({"team": "b"})  # tags, unlike params, may change
        run.log_metrics({"acc": 0.8, "loss": 0.5}, step=0)
        run.log_metric("acc", 0.85, step=1)

    info = workspace.runs.get(run.run_id)
    assert info.run_id == run.run_id
    assert info.name == "train"
    assert info.experiment == "default"
    # Params are stored as strings: JSON for non-strings, strings unchanged.
    assert info.params == {
        "C": "1.0",
        "kernel": "rbf",
        "layers": "[64, 32]",
        "max_iter": "200",
        "solver": "lbfgs",
    }
    assert info.tags == {"team": "b", "stage": "dev"}
    assert info.metrics == {"acc": 0.85, "loss": 0.5}


def test_finished_run_has_status_and_times(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        assert workspace.runs.get(run.run_id).status == "running"
    info = workspace.runs.get(run.run_id)
    assert run.status == info.status == "finished"
    assert info.error is None
    assert info.end_time is not None
    assert info.start_time.tzinfo is not None
    assert info.end_time >= info.start_time
    assert info.duration_s is not None and info.duration_s >= 0


def test_failed_run_records_the_error_and_keeps_its_metrics(
    workspace: modelyard.Workspace,
) -> None:
    with pytest.raises(ValueError, match="diverged at step 3"):
        with workspace.start_run("train") as run:
            run.log_metric("loss", 9.5, step=3)
            raise ValueError("diverged at step 3")
    info = workspace.runs.get(run.run_id)
    assert info.status == "failed"
    assert info.error == "ValueError: diverged at step 3"
    assert info.end_time is not None
    # Buffered metrics are written even when the block fails: they explain the failure.
    assert info.metrics == {"loss": 9.5}
    assert [p.value for p in workspace.runs.history(run.run_id, "loss")] == [9.5]


def test_dataset_fingerprint_rows_and_schema(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        digest = run.log_dataset("train", FRAME)
        run.log_dataset("holdout", FRAME.iloc[1:], context="eval")
    assert digest == modelyard.fingerprint(FRAME)

    info = workspace.runs.get(run.run_id)
    assert [d["name"] for d in info.datasets] == ["holdout", "train"]
    holdout, train = info.datasets
    assert train == {
        "name": "train",
        "fingerprint": modelyard.fingerprint(FRAME),
        "context": "train",
        "rows": 3,
        "schema": modelyard.Schema.infer(FRAME).to_json_dict(),
    }
    assert holdout["fingerprint"] == modelyard.fingerprint(FRAME.iloc[1:])
    assert holdout["fingerprint"] != train["fingerprint"]
    assert holdout["context"] == "eval"
    assert holdout["rows"] == 2
    schema = modelyard.Schema.model_validate(train["schema"])
    assert [(f.name, f.dtype) for f in schema.fields] == [
        ("x", "float64"),
        ("n", "int64"),
        ("s", "string"),
        ("ok", "bool"),
    ]


def test_artifacts_round_trip(workspace: modelyard.Workspace, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("accuracy 0.9\n")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "sub" / "b.csv").write_text("y\n22\n")

    with workspace.start_run("train") as run:
        file_digest = run.log_artifact(report)
        renamed = run.log_artifact(report, name="copies/report-v2.txt")
        run.log_artifact(folder)
        run.log_text("hello", "notes.md")
        run.log_dict({"b": 2, "a": [1, 2]}, "config.json")
        with pytest.raises(InvalidInputError, match="does not exist"):
            run.log_artifact(tmp_path / "missing.bin")

    assert renamed == file_digest
    info = workspace.runs.get(run.run_id)
    by_path = {a["path"]: a for a in info.artifacts}
    assert sorted(by_path) == [
        "config.json",
        "copies/report-v2.txt",
        "notes.md",
        "plots",
        "report.txt",
    ]
    assert by_path["report.txt"] == {
        "path": "report.txt",
        "digest": file_digest,
        "size": len("accuracy 0.9\n"),
        "kind": "file",
    }
    assert by_path["plots"]["kind"] == "tree"
    assert by_path["plots"]["size"] == len("x\n1\n") + len("y\n22\n")

    store = workspace.artifacts
    assert store.get(file_digest) == b"accuracy 0.9\n"
    assert store.get(by_path["notes.md"]["digest"]) == b"hello"
    assert json.loads(store.get(by_path["config.json"]["digest"])) == {"a": [1, 2], "b": 2}
    manifest = json.loads(store.get(by_path["plots"]["digest"]))
    assert sorted(manifest["files"]) == ["a.csv", "sub/b.csv"]
    assert store.get(manifest["files"]["sub/b.csv"]["digest"]) == b"y\n22\n"


# -- metrics ------------------------------------------------------------------------------


def test_history_returns_every_step_in_order(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        for step in (3, 0, 2):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.flush()
        run.log_metric("loss", 0.5, step=1)
        run.log_metric("acc", 0.1, step=0)
    history = workspace.runs.history(run.run_id, "loss")
    assert [p.step for p in history] == [0, 1, 2, 3]
    assert [p.value for p in history] == [1.0, 0.5, 1.0 / 3, 0.25]
    assert all(p.timestamp.tzinfo is not None for p in history)
    assert workspace.runs.history(run.run_id, "never-logged") == []


def test_many_metrics_are_batched_and_all_kept(workspace: modelyard.Workspace) -> None:
    steps = 2500  # more than one flush batch (FLUSH_ROWS)
    with workspace.start_run("train") as run:
        for step in range(steps):
            run.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    loss = workspace.runs.history(run.run_id, "loss")
    assert [p.step for p in loss] == list(range(steps))
    assert loss[-1].value == pytest.approx(1.0 / steps)
    assert len(workspace.runs.history(run.run_id, "lr")) == steps
    assert workspace.runs.get(run.run_id).metrics == {"loss": pytest.approx(1.0 / steps), "lr": 0.1}


def test_flush_makes_metrics_visible_while_the_run_is_running(
    workspace: modelyard.Workspace,
) -> None:
    with workspace.start_run("train") as run:
        run.log_metric("loss", 0.7, step=0)
        run.flush()
        assert workspace.runs.get(run.run_id).metrics == {"loss": 0.7}


def test_latest_value_is_the_greatest_step_then_timestamp(
    workspace: modelyard.Workspace,
) -> None:
    with workspace.start_run("train") as run:
        run.log_metric("acc", 0.9, step=5)
        run.flush()
        run.log_metric("acc", 0.1, step=3)  # logged later, but an earlier step
        run.flush()
        assert workspace.runs.get(run.run_id).metrics["acc"] == 0.9
        run.log_metric("acc", 0.95, step=5)  # same step, later: wins
        run.flush()
        assert workspace.runs.get(run.run_id).metrics["acc"] == 0.95
        # Within one batch the same rule holds.
        run.log_metric("f1", 0.4, step=7)
        run.log_metric("f1", 0.2, step=6)
        run.log_metric("f1", 0.3, step=7)
    info = workspace.runs.get(run.run_id)
    assert info.metrics == {"acc": 0.95, "f1": 0.3}
    assert [p.value for p in workspace.runs.history(run.run_id, "f1")] == [0.2, 0.4, 0.3]


def test_nan_metric_is_stored_as_missing(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        run.log_metric("loss", float("nan"))
    assert workspace.runs.get(run.run_id).metrics == {"loss": None}
    assert [p.value for p in workspace.runs.history(run.run_id, "loss")] == [None]


def test_metric_must_be_a_number(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        with pytest.raises(InvalidInputError, match="metric 'acc' must be a number, got str"):
            run.log_metric("acc", "high")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="non-empty string"):
            run.log_metric("", 1.0)


# -- params are immutable -----------------------------------------------------------------


def test_params_are_immutable(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train", params={"C": 1.0}) as run:
        run.log_param("C", 1.0)  # the same value again is fine
        run.log_param("depth", 3)
        run.log_param("depth", 3)
        with pytest.raises(
            ConflictError, match=r"param 'C' .* is already '1\.0', not '2\.0'"
        ) as caught:
            run.log_param("C", 2.0)
        assert isinstance(caught.value, RuntimeError)
        with pytest.raises(ConflictError, match="immutable"):
            run.log_params({"depth": 4})
    assert workspace.runs.get(run.run_id).params == {"C": "1.0", "depth": "3"}


# -- logging to a run that has ended -------------------------------------------------------


def test_logging_after_the_run_ended_is_a_conflict(
    workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    with workspace.start_run("train") as run:
        pass
    late_calls = [
        lambda: run.log_metric("acc", 1.0),
        lambda: run.log_metrics({"acc": 1.0}),
        lambda: run.log_param("C", 1),
        lambda: run.set_tag("team", "a"),
        lambda: run.log_dataset("train", FRAME),
        lambda: run.log_artifact(path),
        lambda: run.log_text("x", "x.txt"),
        lambda: run.log_dict({"a": 1}, "a.json"),
    ]
    for call in late_calls:
        with pytest.raises(ConflictError, match=f"run {run.run_id} is finished"):
            call()
    info = workspace.runs.get(run.run_id)
    assert (info.metrics, info.params, info.tags, info.artifacts) == ({}, {}, {}, [])
    with pytest.raises(ConflictError, match="already started"):
        run.start()


# -- captured automatically ---------------------------------------------------------------


def test_seed_from_seed_everything_and_explicit_seed_wins(
    workspace: modelyard.Workspace,
) -> None:
    with workspace.start_run("unseeded") as unseeded:
        pass
    assert modelyard.seed_everything(7) == 7
    with workspace.start_run("seeded") as seeded:
        pass
    with workspace.start_run("explicit", seed=11) as explicit:
        pass
    assert workspace.runs.get(unseeded.run_id).seed is None
    assert workspace.runs.get(seeded.run_id).seed == 7
    assert workspace.runs.get(explicit.run_id).seed == 11


def test_seed_everything_makes_random_draws_repeat() -> None:
    modelyard.seed_everything(3)
    first = (np.random.rand(5), np.random.randint(0, 1000, size=5), random.random())
    np.random.rand(100)  # move the generators on
    modelyard.seed_everything(3)
    again = (np.random.rand(5), np.random.randint(0, 1000, size=5), random.random())
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]
    modelyard.seed_everything(4)
    assert not np.array_equal(np.random.rand(5), first[0])


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "7", True])
def test_seed_everything_rejects_bad_seeds(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        modelyard.seed_everything(bad)  # type: ignore[arg-type]


def test_environment_is_captured(workspace: modelyard.Workspace) -> None:
    with workspace.start_run("train") as run:
        pass
    env = workspace.runs.get(run.run_id).environment
    assert env["python"] == platform.python_version()
    assert env["implementation"] == platform.python_implementation()
    packages = env["packages"]
    assert packages["numpy"] == np.__version__
    assert packages["scikit-learn"] == sklearn.__version__
    assert packages["pandas"] == pd.__version__
    assert packages["modelyard"] == modelyard.__version__


def test_git_commit_is_captured_and_follows_the_checkout(
    workspace: modelyard.Workspace, outside_git: Path
) -> None:
    repo = outside_git
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "v1")
    first = git(repo, "rev-parse", "HEAD")

    with workspace.start_run("clean") as clean:
        pass
    (repo / "train.py").write_text("print('v2')\n")
    with workspace.start_run("edited") as edited:
        pass
    git(repo, "commit", "-q", "-am", "v2")
    second = git(repo, "rev-parse", "HEAD")
    with workspace.start_run("committed") as committed:
        pass

    assert len(first) == 40 and first != second
    assert workspace.runs.get(clean.run_id).git_commit == first
    # Uncommitted changes to tracked files are flagged; the commit alone would lie.
    assert workspace.runs.get(edited.run_id).git_commit == f"{first}-dirty"
    # A commit made between two runs of one process is what the later run records.
    assert workspace.runs.get(committed.run_id).git_commit == second


def test_git_commit_is_none_outside_a_repository(
    workspace: modelyard.Workspace, outside_git: Path
) -> None:
    with workspace.start_run("train") as run:
        pass
    assert workspace.runs.get(run.run_id).git_commit is None


# -- reading back: unknown runs ------------------------------------------------------------


def test_unknown_run_id_is_not_found(workspace: modelyard.Workspace) -> None:
    with pytest.raises(NotFoundError, match="run 'no-such-run' does not exist"):
        workspace.runs.get("no-such-run")
    with pytest.raises(LookupError, match="no-such-run"):
        workspace.runs.history("no-such-run", "loss")


# -- search -------------------------------------------------------------------------------


@pytest.fixture
def runs(workspace: modelyard.Workspace) -> modelyard.Workspace:
    """Five runs, started in the order a, b, c, d, e.

    name  experiment  C     model  acc   team  status    other
    a     default     0.1   lr     0.70  x     finished  learning rate = 0.01
    b     default     1.0   svm    0.90  y     finished
    c     default     10.0  lr     -     x     failed
    d     other       1.0   lr     0.95  z     finished
    e     default     0.5   tree   0.80  y     finished  note = salt and pepper
    """
    table = [
        ("a", "default", {"C": 0.1, "model": "lr", "learning rate": 0.01}, 0.70, "x"),
        ("b", "default", {"C": 1.0, "model": "svm"}, 0.90, "y"),
        ("c", "default", {"C": 10.0, "model": "lr"}, None, "x"),
        ("d", "other", {"C": 1.0, "model": "lr"}, 0.95, "z"),
        ("e", "default", {"C": 0.5, "model": "tree"}, 0.80, "y"),
    ]
    for name, experiment, params, acc, team in table:
        tags = {"team": team}
        if name == "e":
            tags["note"] = "salt and pepper"
        try:
            with workspace.start_run(name, params=params, tags=tags, experiment=experiment) as r:
                r.log_metric("loss", 1.0 - (acc or 0.0))
                if acc is not None:
                    r.log_metric("acc", acc)
                else:
                    raise RuntimeError("out of memory")
        except RuntimeError:
            pass
    return workspace


def _names(runs: list[modelyard.tracking.RunInfo]) -> list[str]:
    return [r.name for r in runs]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("params.C = '1.0'", {"b", "d"}),
        ("params.C = 1.0", {"b", "d"}),  # an unquoted number still compares as the string
        ("params.model != 'lr'", {"b", "e"}),
        ("metrics.acc = 0.9", {"b"}),
        ("metrics.acc != 0.9", {"a", "d", "e"}),  # c has no acc: it matches nothing
        ("metrics.acc > 0.9", {"d"}),
        ("metrics.acc >= 0.9", {"b", "d"}),
        ("metrics.acc < 0.9", {"a", "e"}),
        ("metrics.acc <= 0.8", {"a", "e"}),
        ("metric.loss > 0.5", {"c"}),
        ("tags.team = 'x'", {"a", "c"}),
        ('tag.team = "y"', {"b", "e"}),
        ("status = 'failed'", {"c"}),
        ("status != 'failed'", {"a", "b", "d", "e"}),
        ("name = 'b'", {"b"}),
        ("experiment = 'other'", {"d"}),
        ("params.`learning rate` = '0.01'", {"a"}),
        ("tags.note = 'salt and pepper'", {"e"}),
        ("params.model = 'lr' and metrics.acc > 0.5", {"a", "d"}),
        ("params.model = 'lr' AND tags.team = 'x' And status = 'finished'", {"a"}),
        ("metrics.acc >= 0.8 and metrics.acc < 0.95 and params.C != '1.0'", {"e"}),
        ("tags.team = 'nobody'", set()),
        ("", {"a", "b", "c", "d", "e"}),
    ],
)
def test_search_filters(runs: modelyard.Workspace, query: str, expected: set[str]) -> None:
    assert set(_names(runs.runs.search(query))) == expected


def test_search_returns_complete_run_infos(runs: modelyard.Workspace) -> None:
    (found,) = runs.runs.search("name = 'b'")
    assert found == runs.runs.get(found.run_id)
    assert found.params == {"C": "1.0", "model": "svm"}
    assert found.metrics == {"acc": 0.9, "loss": pytest.approx(0.1)}


def test_experiments_count_their_runs_newest_first(runs: modelyard.Workspace) -> None:
    found = runs.runs.experiments()
    newest = {e.name: max(r.start_time for r in runs.runs.search(experiment=e.name)) for e in found}
    assert {e.name: e.runs for e in found} == {"other": 1, "default": 4}
    assert [e.last_run for e in found] == sorted(newest.values(), reverse=True)
    assert all(e.last_run == newest[e.name] for e in found)


def test_search_orders_newest_first_by_default(runs: modelyard.Workspace) -> None:
    assert _names(runs.runs.search()) == ["e", "d", "c", "b", "a"]
    assert _names(runs.runs.search(order_by="start_time")) == ["a", "b", "c", "d", "e"]
    assert _names(runs.runs.search(order_by="name DESC")) == ["e", "d", "c", "b", "a"]


def test_search_orders_by_metric_with_missing_values_last(runs: modelyard.Workspace) -> None:
    assert _names(runs.runs.search(order_by="metrics.acc DESC")) == ["d", "b", "e", "a", "c"]
    assert _names(runs.runs.search(order_by="metrics.acc ASC")) == ["a", "e", "b", "d", "c"]
    assert _names(runs.runs.search(order_by="metrics.acc")) == ["a", "e", "b", "d", "c"]
    assert _names(runs.runs.search(order_by="metrics.loss desc")) == ["c", "a", "e", "b", "d"]


def test_search_combines_filter_order_limit_and_experiment(runs: modelyard.Workspace) -> None:
    assert _names(runs.runs.search(order_by="metrics.acc DESC", max_results=2)) == ["d", "b"]
    assert _names(runs.runs.search(max_results=1)) == ["e"]
    assert _names(runs.runs.search(experiment="other")) == ["d"]
    assert _names(
        runs.runs.search("tags.team != 'x'", experiment="default", order_by="metrics.acc DESC")
    ) == ["b", "e"]
    assert runs.runs.search(experiment="nope") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("metrics.acc >> 0.9", "cannot parse filter clause 'metrics.acc >> 0.9'; write e.g."),
        ("metrics.acc > 0.9 or params.C = '1'", "cannot parse filter clause"),
        ("params.C = ", "cannot parse filter clause"),
        ("colour = 'red'", "unknown run attribute 'colour' in filter; use one of name, status"),
        ("metrics.acc > 'high'", "metric 'acc' compares with a number, not 'high'"),
        ("attrs.status = 'x'", "unknown filter prefix 'attrs'; use params., metrics. or tags."),
        ("metrics.acc > 1.2.3", "'1.2.3' in 'metrics.acc > 1.2.3' is not a number"),
    ],
)
def test_search_rejects_bad_filters(
    workspace: modelyard.Workspace, query: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        workspace.runs.search(query)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("order_by", "message"),
    [
        ("metrics.acc sideways", "cannot parse order 'metrics.acc sideways'; write e.g."),
        ("colour", "cannot order by 'colour'; use start_time or metrics.KEY"),
        ("attrs.status", "unknown order prefix 'attrs'"),
    ],
)
def test_search_rejects_bad_orders(
    workspace: modelyard.Workspace, order_by: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        workspace.runs.search(order_by=order_by)
    assert message in str(caught.value)


@pytest.mark.parametrize("filter_key", ["m0", "m1"], ids=["other-metric", "same-metric"])
def test_search_filters_and_orders_by_metrics_together(
    workspace: modelyard.Workspace, filter_key: str
) -> None:
    """The benchmark's query shape: a metric filter with ordering by a metric."""
    values = [(0.9, 0.1), (0.2, 0.8), (0.7, 0.6), (0.6, None), (0.95, 0.3)]
    ids = {}
    for i, (m0, m1) in enumerate(values):
        with workspace.start_run(f"r{i}") as run:
            run.log_metrics({"m0": m0} if m1 is None else {"m0": m0, "m1": m1})
        ids[run.run_id] = (m0, m1)
    found = workspace.runs.search(f"metrics.{filter_key} > 0.25", order_by="metrics.m1 DESC")
    index = 0 if filter_key == "m0" else 1
    expected = [
        rid
        for rid, v in sorted(ids.items(), key=lambda kv: -(kv[1][1] or -1))
        if v[index] is not None and v[index] > 0.25
    ]
    assert [r.run_id for r in found] == expected
    ascending = workspace.runs.search(f"metrics.{filter_key} > 0.25", order_by="metrics.m1 ASC")
    with_m1 = [r.run_id for r in ascending if r.metrics.get("m1") is not None]
    assert with_m1 == [rid for rid in reversed(expected) if ids[rid][1] is not None]
    # A run that lacks the ordering metric comes last, whatever the direction.
    if filter_key == "m0":
        assert ascending[-1].metrics.get("m1") is None
