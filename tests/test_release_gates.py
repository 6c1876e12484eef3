"""Release gates, promotion and rollback: ``modelyard release check | promote | rollback``.

Real models on scikit-learn's bundled breast-cancer and diabetes sets: a logistic
regression is the strong model, a decision stump the weak one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge

import modelyard
from cli_support import run_cli
from modelyard.contracts import Field, Schema
from modelyard.errors import ConfigError, ConflictError, InvalidInputError
from modelyard.registry import Registry, Signature, signature_problems
from modelyard.release import (
    check_release,
    parse_gate,
    parse_release_config,
    promote,
    release_history,
    rollback,
)
from release_support import (
    NAME,
    Split,
    breast_cancer,
    good_model,
    production,
    register,
    weak_model,
    with_config,
)

# Loose latency bound: the gate must hold on a busy two-core CI machine.
GATES = (
    "[release.cancer]\n"
    'gates = ["roc_auc >= 0.85", "roc_auc >= champion.roc_auc - 0.005", "p99_latency_ms <= 250"]\n'
)


@pytest.fixture(scope="module")
def split() -> Split:
    return breast_cancer()


@pytest.fixture
def weak_candidate(workspace: modelyard.Workspace, split: Split) -> Iterator[modelyard.Workspace]:
    """Strong model in production (v1), a stump as staging (v2), gates in modelyard.toml."""
    register(workspace, good_model(), split, alias="production")
    register(workspace, weak_model(), split, alias="staging")
    ws = with_config(workspace, GATES)
    yield ws
    ws.close()


@pytest.fixture
def strong_candidate(workspace: modelyard.Workspace, split: Split) -> Iterator[modelyard.Workspace]:
    """A stump in production (v1), the strong model as staging (v2), gates in modelyard.toml."""
    register(workspace, weak_model(), split, alias="production")
    register(workspace, good_model(), split, alias="staging")
    ws = with_config(workspace, GATES)
    yield ws
    ws.close()


def _outcomes(details: dict[str, object]) -> dict[str, str]:
    gates = details["gates"]
    assert isinstance(gates, list)
    return {g["gate"]: g["outcome"] for g in gates}


# -- the gate grammar ----------------------------------------------------------------------
def test_gates_parse_absolute_and_champion_relative_conditions() -> None:
    absolute = parse_gate("roc_auc >= 0.85")
    relative = parse_gate("roc_auc>=champion.roc_auc-0.005")
    above = parse_gate("rmse < champion.rmse + 1e-3")

    assert (absolute.metric, absolute.op, absolute.value, absolute.relative) == (
        "roc_auc",
        ">=",
        0.85,
        False,
    )
    assert relative.champion_metric == "roc_auc" and relative.offset == -0.005
    assert relative.threshold({"roc_auc": 0.9}) == pytest.approx(0.895)
    assert above.threshold({"rmse": 50.0}) == pytest.approx(50.001)
    assert parse_gate("r2 > -1").holds(0.3, -1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auc >= 0.85", "unknown metric 'auc'; known metrics: accuracy, f1, roc_auc"),
        ("roc_auc >= champion.auc", "unknown metric 'auc'"),
        ("roc_auc == 0.9", "is not a condition; write 'METRIC OP VALUE'"),
        ("roc_auc >= high", "is not a condition"),
    ],
)
def test_a_bad_gate_is_invalid_input_naming_the_fix(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_gate(text)
    assert message in caught.value.message


def test_model_gates_replace_the_defaults_and_canary_settings_are_not_a_model() -> None:
    config = parse_release_config(
        {
            "gates": ["p99_latency_ms <= 20"],
            "churn": {"gates": ["roc_auc >= 0.8"]},
            "canary": {"steps": [10, 100]},
        },
        "x.toml",
    )

    assert [g.text for g in config.gates_for("churn")] == ["roc_auc >= 0.8"]
    assert [g.text for g in config.gates_for("other")] == ["p99_latency_ms <= 20"]
    assert set(config.models) == {"churn"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"gates": "roc_auc >= 0.8"}, "x.toml: release.gates must be a list of strings"),
        ({"churn": {"gate": []}}, "unknown key 'release.churn.gate'; [release.churn] holds gates"),
        ({"threshold": 3}, "unknown key 'release.threshold'"),
        ({"churn": {"gates": ["f1 >= x"]}}, "x.toml: release.churn.gates: gate 'f1 >= x' is not"),
    ],
)
def test_a_bad_release_table_is_a_config_error(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_release_config(section, "x.toml")
    assert message in caught.value.message


# -- outcomes ------------------------------------------------------------------------------
def test_a_worse_candidate_is_blocked_and_the_refusal_recorded(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, out, err = run_cli(capsys, "release", "promote", NAME, "-w", str(ws.root))

    assert code == 1, err
    assert "roc_auc >= champion.roc_auc - 0.005" in out and "FAIL" in out
    assert "blocked:" in out and "cancer@production stays at version 1" in out
    assert production(ws) == 1
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.passed, last.from_version, last.to_version) == (
        "promote-blocked",
        False,
        1,
        2,
    )
    assert _outcomes(dict(last.details)) == {
        "data contract": "pass",
        "roc_auc >= 0.85": "pass",
        "roc_auc >= champion.roc_auc - 0.005": "fail",
        "p99_latency_ms <= 250": "pass",
    }
    assert last.details["moved"] is False


def test_history_shows_which_gates_blocked_a_promotion_with_their_values(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    w = ["-w", str(ws.root)]
    assert run_cli(capsys, "release", "promote", NAME, *w)[0] == 1
    gates = release_history(ws.metadata, NAME)[0].details["gates"]
    (gate,) = [g for g in gates if g["outcome"] == "fail"]

    code, out, err = run_cli(capsys, "release", "history", NAME, *w)

    assert code == 0, err
    assert "failed gates" in out
    (row,) = [line for line in out.splitlines() if "promote-blocked" in line]  # one line
    values = ", ".join(f"{k} {gate[k]:.4g}" for k in ("candidate", "champion", "threshold"))
    assert f"roc_auc >= champion.roc_auc - 0.005 ({values})" in row, row
    assert "p99_latency_ms" not in row and "roc_auc >= 0.85" not in row  # they passed


def test_check_prints_the_table_exits_1_on_a_failed_gate_and_records_it(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, out, _ = run_cli(capsys, "release", "check", NAME, "-w", str(ws.root))

    assert code == 1
    for header in ("gate", "candidate", "champion", "threshold", "result"):
        assert header in out
    assert "staging (version 2) vs production (version 1)" in out
    assert "1 of 4 gates failed" in out
    code, out, _ = run_cli(capsys, "release", "check", NAME, "--json", "-w", str(ws.root))
    report = json.loads(out)
    assert code == 1 and report["passed"] is False
    assert report["metrics"]["champion"]["roc_auc"] > report["metrics"]["candidate"]["roc_auc"]
    assert [r.action for r in release_history(ws.metadata, NAME)] == ["check", "check"]
    assert production(ws) == 1


def test_a_better_candidate_is_promoted_with_its_gate_results(
    strong_candidate: modelyard.Workspace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = strong_candidate
    monkeypatch.setenv("MODELYARD_ACTOR", "ci-release-job")
    code, out, err = run_cli(
        capsys, "release", "promote", NAME, "--gate", "accuracy >= 0.9", "-w", str(ws.root)
    )

    assert code == 0, err + out
    assert "promoted cancer@production: version 1 -> version 2" in out
    assert production(ws) == 2
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.actor, last.passed, last.from_version, last.to_version) == (
        "promote",
        "ci-release-job",
        True,
        1,
        2,
    )
    outcomes = _outcomes(dict(last.details))
    assert outcomes["accuracy >= 0.9"] == "pass"
    assert set(outcomes.values()) == {"pass"}


def test_force_with_a_reason_moves_past_a_failed_gate_and_records_why(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, out, err = run_cli(
        capsys,
        "release",
        "promote",
        NAME,
        "--force",
        "--reason",
        "INC-42: champion leaks PII",
        "-w",
        str(ws.root),
    )

    assert code == 0, err
    assert "forced:" in out
    assert production(ws) == 2
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.passed, last.reason) == (
        "force-promote",
        False,
        "INC-42: champion leaks PII",
    )


def test_rollback_moves_production_back_and_records_it(
    strong_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = strong_candidate
    assert run_cli(capsys, "release", "promote", NAME, "-w", str(ws.root))[0] == 0
    assert production(ws) == 2
    assert ws.registry.rollback_target(NAME) == 1  # what the dashboard offers

    code, out, err = run_cli(
        capsys, "release", "rollback", NAME, "--reason", "p99 regression", "-w", str(ws.root)
    )

    assert code == 0, err
    assert "rolled back cancer@production: version 2 -> version 1" in out
    assert production(ws) == 1
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.from_version, last.to_version, last.reason) == (
        "rollback",
        2,
        1,
        "p99 regression",
    )
    code, out, _ = run_cli(capsys, "release", "history", NAME, "-w", str(ws.root))
    assert code == 0 and "rollback" in out and "promote" in out
    assert ws.registry.rollback_target(NAME) is None  # the stack is back at its first version


def test_a_first_release_skips_champion_gates_and_keeps_absolute_ones(
    sqlite_workspace: modelyard.Workspace, split: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    register(sqlite_workspace, good_model(), split, alias="staging")
    ws = with_config(sqlite_workspace, GATES)

    code, out, err = run_cli(capsys, "release", "promote", NAME, "-w", str(ws.root))

    assert code == 0, err
    assert "no champion yet" in out and "skip" in out
    assert "promoted cancer@production: not set -> version 1" in out
    assert production(ws) == 1
    ws.close()


def test_promoting_what_production_already_runs_moves_nothing(
    sqlite_workspace: modelyard.Workspace, split: Split
) -> None:
    version = register(sqlite_workspace, good_model(), split, alias="production")
    sqlite_workspace.registry.set_alias(NAME, "staging", version)

    result = promote(sqlite_workspace, NAME)

    assert not result.moved and result.report is None
    assert release_history(sqlite_workspace.metadata, NAME) == []


# -- holdout sets, data contract, regression -----------------------------------------------
def test_a_given_holdout_file_is_checked_against_the_data_contract(
    weak_candidate: modelyard.Workspace, split: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    broken = split.holdout.copy()
    broken.loc[broken.index[3], "mean radius"] = None
    path = ws.root / "holdout.csv"
    broken.to_csv(path, index=False)

    code, out, _ = run_cli(
        capsys, "release", "check", NAME, "--holdout", str(path), "--json", "-w", str(ws.root)
    )

    report = json.loads(out)
    contract = report["gates"][0]
    assert code == 1 and contract["gate"] == "data contract" and contract["outcome"] == "fail"
    assert "'mean radius': null value in a non-nullable column" in contract["note"]
    assert {g["outcome"] for g in report["gates"][1:]} == {"skip"}
    assert report["holdout"]["source"] == str(path)
    assert report["holdout"]["fingerprint"].startswith("sha256:")


def test_regressors_get_mae_rmse_r2_on_a_csv_holdout_with_the_target_inferred(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    train, hold = x.index[:300], x.index[300:]
    for model, alias in ((DummyRegressor(), "production"), (Ridge(alpha=0.1), "staging")):
        with ws.start_run("train") as run:
            fitted = model.fit(x.loc[train], y.loc[train])
            logged = ws.registry.log_model(run, fitted, input_example=x.head(10))
        ws.registry.set_alias("diabetes", alias, ws.registry.register("diabetes", logged).version)
    path = tmp_path / "hold.csv"
    x.loc[hold].assign(progression=y.loc[hold]).to_csv(path, index=False)

    report = check_release(
        ws,
        "diabetes",
        gates=["r2 >= 0.3", "rmse < champion.rmse - 5", "mae <= champion.mae"],
        holdout=path,
        replay_rows=20,
    )

    assert report.passed and report.kind == "regressor" and report.target == "progression"
    assert report.champion_metrics is not None
    assert report.champion_metrics["r2"] is not None and report.champion_metrics["r2"] < 0.05
    assert set(report.candidate_metrics) == {
        "mae",
        "rmse",
        "r2",
        "p50_latency_ms",
        "p99_latency_ms",
    }
    with pytest.raises(InvalidInputError, match="needs 'roc_auc', which a regressor does not"):
        check_release(ws, "diabetes", gates=["roc_auc >= 0.5"], holdout=path, replay_rows=0)
    with pytest.raises(InvalidInputError, match="'p99_latency_ms', which only a load replay"):
        check_release(ws, "diabetes", gates=["p99_latency_ms < 9"], holdout=path, replay_rows=0)


def test_a_holdout_with_extra_columns_needs_the_target_named_and_replays_inputs_only(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(10))
    ws.registry.set_alias("diabetes", "staging", ws.registry.register("diabetes", logged).version)
    path = tmp_path / "hold.parquet"
    x.assign(patient_id=range(len(x)), progression=y).to_parquet(path)

    with pytest.raises(InvalidInputError, match="not inputs: patient_id, progression.*--target"):
        check_release(ws, "diabetes", holdout=path)
    report = check_release(ws, "diabetes", holdout=path, target="progression", replay_rows=10)

    assert report.passed and report.champion_version is None
    assert report.candidate_metrics["p99_latency_ms"] is not None


# -- bad input: exit 2 and nothing moves ---------------------------------------------------
def _nothing_moved(ws: modelyard.Workspace, version: int = 1) -> None:
    assert production(ws) == version
    assert [r.action for r in release_history(ws.metadata, NAME)] == []


def test_a_gate_naming_an_unknown_metric_is_exit_2(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, _, err = run_cli(
        capsys, "release", "promote", NAME, "--gate", "auc >= 0.9", "-w", str(ws.root)
    )

    assert code == 2 and "Traceback" not in err
    assert "unknown metric 'auc'; known metrics: accuracy, f1, roc_auc, pr_auc" in err
    _nothing_moved(ws)


def test_an_unknown_metric_in_modelyard_toml_fails_any_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "modelyard.toml").write_text('[release.churn]\ngates = ["auc >= 0.9"]\n')

    code, _, err = run_cli(capsys, "release", "history", "-w", str(tmp_path))

    assert code == 2 and "Traceback" not in err
    assert "modelyard.toml: release.churn.gates: gate 'auc >= 0.9' names unknown metric" in (
        err.replace("\n", " ")
    )
    with pytest.raises(ConfigError):
        modelyard.Workspace(tmp_path).config  # noqa: B018


def test_promoting_an_alias_that_does_not_exist_is_exit_2(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, _, err = run_cli(
        capsys, "release", "promote", NAME, "--candidate", "canary", "-w", str(ws.root)
    )

    assert code == 2
    assert "model 'cancer' has no alias 'canary'" in err.replace("\n", " ")
    _nothing_moved(ws)


def test_force_without_a_reason_is_exit_2(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    code, _, err = run_cli(capsys, "release", "promote", NAME, "--force", "-w", str(ws.root))

    assert code == 2 and "--force needs --reason TEXT" in err
    _nothing_moved(ws)


def test_a_candidate_that_drops_a_champion_input_is_exit_2_naming_the_field(
    workspace: modelyard.Workspace, split: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    register(workspace, good_model(), split, alias="production")
    fewer = [c for c in split.train_x.columns if c != "mean radius"]
    register(workspace, good_model(), split, alias="staging", columns=fewer)
    ws = with_config(workspace)

    code, _, err = run_cli(capsys, "release", "promote", NAME, "-w", str(ws.root))

    assert code == 2
    assert "candidate cancer/2 is not compatible with champion cancer/1: " in err
    assert "input 'mean radius' (float64) is missing" in err.replace("\n", " ")
    _nothing_moved(ws)
    ws.close()


def test_a_candidate_without_a_holdout_set_says_how_to_give_one(
    weak_candidate: modelyard.Workspace, split: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    version = register(ws, weak_model(), split, keep_holdout=False)
    ws.registry.set_alias(NAME, "staging", version)

    code, _, err = run_cli(capsys, "release", "check", NAME, "-w", str(ws.root))

    assert code == 2
    assert "has no holdout set" in err and "--holdout FILE" in err.replace("\n", " ")


@pytest.mark.parametrize(
    ("champion", "candidate", "problem"),
    [
        (
            Field(name="age", dtype="int64"),
            Field(name="age", dtype="string"),
            "input 'age' is int64 in the champion but string in the candidate",
        ),
        (
            Field(name="age", dtype="float64", nullable=True),
            Field(name="age", dtype="float64"),
            "input 'age' is float64 nullable in the champion but float64 in the candidate",
        ),
        (
            Field(name="plan", dtype="string", categories=("a", "b")),
            Field(name="plan", dtype="string", categories=("a",)),
            "input 'plan' is string in ['a', 'b'] in the champion",
        ),
    ],
)
def test_a_retyped_or_narrowed_input_is_incompatible(
    champion: Field, candidate: Field, problem: str
) -> None:
    out = Schema.of(Field(name="prediction", dtype="float64"))

    found = signature_problems(
        Signature(inputs=Schema.of(champion), outputs=out),
        Signature(inputs=Schema.of(candidate), outputs=out),
    )

    assert len(found) == 1 and found[0].startswith(problem)


def test_widening_an_input_and_adding_outputs_stays_compatible() -> None:
    old = Signature(
        inputs=Schema.of(Field(name="age", dtype="int64")),
        outputs=Schema.of(Field(name="prediction", dtype="int64")),
    )
    new = Signature(
        inputs=Schema.of(
            Field(name="age", dtype="float64", nullable=True),
            Field(name="region", dtype="string", nullable=True),
        ),
        outputs=Schema.of(
            Field(name="prediction", dtype="int64"), Field(name="probability_1", dtype="float64")
        ),
    )
    dropped = Signature(inputs=old.inputs, outputs=Schema.of(Field(name="y", dtype="int64")))

    assert signature_problems(old, new) == []
    assert signature_problems(old, dropped) == ["output 'prediction' (int64) is no longer returned"]


def test_holdout_rows_round_trip_through_the_run(
    sqlite_workspace: modelyard.Workspace, split: Split
) -> None:
    from modelyard.tracking import read_holdout

    register(sqlite_workspace, good_model(), split, alias="staging")
    version = sqlite_workspace.registry.get(f"{NAME}@staging")
    assert version.run_id is not None

    kept = read_holdout(sqlite_workspace.runs, sqlite_workspace.artifacts, version.run_id)

    assert kept is not None and kept.target == "target"
    pd.testing.assert_frame_equal(kept.frame, split.holdout.reset_index(drop=True))
    datasets = sqlite_workspace.runs.get(version.run_id).datasets
    assert [(d["name"], d["context"], d["rows"]) for d in datasets] == [
        ("holdout", "holdout", len(split.holdout))
    ]


# -- review fixes --------------------------------------------------------------------------
def test_an_alias_moves_only_from_the_version_it_was_expected_at(
    workspace: modelyard.Workspace, split: Split
) -> None:
    first = register(workspace, weak_model(), split, alias="production")
    second = register(workspace, good_model(), split)
    registry = workspace.registry

    with pytest.raises(ConflictError, match="points at version 1, but this move expected it at"):
        registry.move_alias(NAME, "production", second, expect=second)
    with pytest.raises(ConflictError, match="points at version 1, but this move expected it unset"):
        registry.move_alias(NAME, "production", second, expect=None)
    assert production(workspace) == first

    assert registry.move_alias(NAME, "production", second, expect=first).version == second
    assert registry.move_alias(NAME, "staging", first, expect=None).aliases == ("staging",)
    assert [(kind, v) for _, kind, v in registry.alias_history(NAME, "production")] == [
        ("set", first),
        ("set", second),
    ]
    assert registry.rollback(NAME).version == first  # a compare-and-set move is a plain move


def test_a_promotion_and_its_record_commit_together(
    strong_candidate: modelyard.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.release import _promote

    ws = strong_candidate

    def full_disk(*_: object, **__: object) -> None:
        raise OSError("no space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(_promote, "write_record", full_disk)
        with pytest.raises(OSError, match="no space left"):
            promote(ws, NAME)
    assert production(ws) == 1  # no move without its record
    assert release_history(ws.metadata, NAME) == []

    promote(ws, NAME)
    with monkeypatch.context() as patched:
        patched.setattr(_promote, "write_record", full_disk)
        with pytest.raises(OSError, match="no space left"):
            rollback(ws, NAME, reason="p99 regression")
    assert production(ws) == 2
    assert [r.action for r in release_history(ws.metadata, NAME)] == ["promote"]


def test_a_promotion_refuses_a_champion_moved_while_its_gates_ran(
    strong_candidate: modelyard.Workspace, split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.release import _promote

    ws = strong_candidate
    judged = _promote.evaluate
    other = ws.registry.get(f"{NAME}@staging").version

    def evaluate_while_someone_promotes(*args: object, **kwargs: object) -> object:
        report = judged(*args, **kwargs)
        ws.registry.set_alias(NAME, "production", other)
        return report

    monkeypatch.setattr(_promote, "evaluate", evaluate_while_someone_promotes)
    ws.registry.set_alias(NAME, "staging", register(ws, good_model(), split))

    with pytest.raises(ConflictError, match="expected it at version 1: someone moved it"):
        promote(ws, NAME)
    assert production(ws) == other
    assert release_history(ws.metadata, NAME) == []


def test_a_metric_undefined_on_the_holdout_fails_its_gate_and_is_recorded(
    strong_candidate: modelyard.Workspace, split: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = strong_candidate
    path = ws.root / "one-class.csv"
    split.holdout[split.holdout["target"] == 1].to_csv(path, index=False)

    code, out, err = run_cli(
        capsys, "release", "check", NAME, "--holdout", str(path), "-w", str(ws.root)
    )

    assert code == 1, err
    row = next(line for line in out.splitlines() if "roc_auc >= 0.85" in line)
    assert "n/a" in row and "FAIL" in row
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.passed) == ("check", False)
    gate = next(g for g in last.details["gates"] if g["gate"] == "roc_auc >= 0.85")
    assert gate["outcome"] == "fail" and gate["candidate"] is None
    assert "roc_auc is undefined on this holdout" in gate["note"]
    assert _outcomes(dict(last.details))["p99_latency_ms <= 250"] == "pass"


def test_a_gate_the_model_can_never_meet_fails_before_any_model_loads(
    sqlite_workspace: modelyard.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = sqlite_workspace
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, Ridge().fit(x, y), input_example=x.head(10))
    ws.registry.set_alias("diabetes", "staging", ws.registry.register("diabetes", logged).version)

    def no_loading(*_: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Registry, "load", no_loading)
    with pytest.raises(InvalidInputError, match="needs 'roc_auc', which a regressor does not"):
        check_release(ws, "diabetes", gates=["roc_auc >= 0.5"], holdout=x.assign(target=y))


def test_the_actor_comes_from_the_workspace_environment(
    strong_candidate: modelyard.Workspace,
) -> None:
    with modelyard.Workspace(
        strong_candidate.root, environ={"MODELYARD_ACTOR": "pipeline-7"}
    ) as ws:
        promote(ws, NAME)
        assert release_history(ws.metadata, NAME)[0].actor == "pipeline-7"


# -- the canary runs the same gates as promote ---------------------------------------------
class _Instant:
    """A canary's clock and sleep with no real waiting (a sleep moves the clock)."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def clock(self) -> Any:
        return self.now

    def sleep(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


def test_a_candidate_that_promote_blocks_is_refused_by_canary_before_any_traffic(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelyard.registry import get_traffic

    ws = weak_candidate
    w = ["-w", str(ws.root)]
    code, _, err = run_cli(
        capsys, "release", "canary", NAME, "--steps", "100", "--interval", "1s", *w
    )

    assert code == 2, err
    line = [x for x in err.splitlines() if x.strip()]
    assert len(line) == 1 and "error:" in line[0], err
    assert "release gate 'roc_auc >= champion.roc_auc - 0.005' failed" in line[0]
    assert "--force --reason" in line[0]
    assert production(ws) == 1 and get_traffic(ws.registry, NAME) is None
    last = release_history(ws.metadata, NAME)[0]
    assert (last.action, last.passed, last.from_version, last.to_version) == (
        "canary-blocked",
        False,
        1,
        2,
    )
    assert _outcomes(dict(last.details))["roc_auc >= champion.roc_auc - 0.005"] == "fail"
    # The same candidate, the same gates: promote blocks it too.
    assert run_cli(capsys, "release", "promote", NAME, *w)[0] == 1
    assert production(ws) == 1


def test_a_candidate_that_passes_the_gates_starts_its_canary(
    strong_candidate: modelyard.Workspace,
) -> None:
    from modelyard.release import run_canary

    ws = strong_candidate
    t = _Instant()
    # No server follows the split, so the one step sees no traffic and rolls back: what
    # matters here is that the rollout started, after its gates were recorded as passed.
    result = run_canary(
        ws, NAME, steps=(100,), interval_s=1, min_requests=1, clock=t.clock, sleep=t.sleep
    )

    assert [s.percent for s in result.steps] == [100.0] and not result.promoted
    actions = [r.action for r in reversed(release_history(ws.metadata, NAME))]
    assert actions == ["canary-gates", "canary-step", "canary-rollback"]
    gates = release_history(ws.metadata, NAME)[-1]
    assert gates.passed is True and set(_outcomes(dict(gates.details)).values()) == {"pass"}
    assert len({r.details["rollout"] for r in release_history(ws.metadata, NAME)}) == 1


def test_canary_force_with_a_reason_starts_past_a_failed_gate_and_records_why(
    weak_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = weak_candidate
    w = ["-w", str(ws.root)]
    code, _, err = run_cli(capsys, "release", "canary", NAME, "--force", *w)
    assert code == 2 and "--force needs --reason" in err
    assert release_history(ws.metadata, NAME) == []

    code, out, err = run_cli(
        capsys, "release", "canary", NAME, "--steps", "100", "--interval", "1s",
        "--min-requests", "1", "--force", "--reason", "INC-7: hotfix", *w,
    )  # fmt: skip

    assert code == 1, err  # it started; with no server it saw no traffic and rolled back
    assert "evaluating cancer/2 on" in out and "step 1/1: 100%" in out
    actions = [r.action for r in reversed(release_history(ws.metadata, NAME))]
    assert actions == ["canary-force", "canary-step", "canary-rollback"]
    forced = release_history(ws.metadata, NAME)[-1]
    assert (forced.passed, forced.reason) == (False, "INC-7: hotfix")
    assert production(ws) == 1


# -- progress ------------------------------------------------------------------------------
def test_release_check_shows_each_step_on_stderr_and_keeps_json_on_stdout(
    strong_candidate: modelyard.Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = strong_candidate
    code, out, err = run_cli(capsys, "release", "check", NAME, "--json", "-w", str(ws.root))

    assert code == 0, err
    assert json.loads(out)["passed"] is True  # stdout is the JSON document alone
    done = [line for line in err.splitlines() if " ... done in " in line]
    steps = [line.split(" ... ")[0] for line in done]
    rows = len(breast_cancer().holdout)
    assert steps == [
        "reading the holdout set and checking it against the data contract",
        "loading cancer/2",
        "loading cancer/1",
        f"evaluating cancer/2 on {rows} holdout rows",
        f"evaluating cancer/1 on {rows} holdout rows",
        f"replaying {min(rows, 200)} rows one at a time for latency",
    ]
    assert all(line.endswith(" s") for line in done)
    # Each step is announced when it starts, not only when it ends.
    assert err.index("loading cancer/2 ...\n") < err.index("loading cancer/2 ... done in")
