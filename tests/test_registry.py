"""Registry: log a model under a run, register numbered versions, move aliases, load, predict.

Tests about the metadata (versions, aliases, lineage, atomicity, concurrency) run on
both back ends; tests about flavors and predictions use the embedded defaults.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import modelyard
from modelyard import Field, Schema, Signature
from modelyard.errors import (
    NotFoundError,
    SchemaValidationError,
)
from modelyard.registry import FLAVORS, LoggedModel, ModelVersion, register_flavor
from modelyard.registry._flavors import detect_flavor
from registry_support import EXAMPLE, double, log_model

# -- trained models (once per module: fitting is not what these tests are about) ----------


class Trained:
    """A fitted model with its training frame and held-out rows."""

    def __init__(self, model: Any, train: pd.DataFrame, held_out: pd.DataFrame) -> None:
        self.model = model
        self.train = train
        self.held_out = held_out


@pytest.fixture(scope="module")
def breast_cancer_lr() -> Trained:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=1000))])
    model.fit(x.iloc[:450], y.iloc[:450])
    return Trained(model, x.iloc[:450], x.iloc[450:])


@pytest.fixture(scope="module")
def diabetes_rf() -> Trained:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = RandomForestRegressor(n_estimators=20, max_depth=5, random_state=0)
    model.fit(x.iloc[:350], y.iloc[:350])
    return Trained(model, x.iloc[:350], x.iloc[350:])


@pytest.fixture(scope="module")
def iris_svc() -> Trained:
    """SVC on string class labels: outputs are probability_setosa, …"""
    data = load_iris(as_frame=True)
    x = data.data.sample(frac=1.0, random_state=0)
    species = data.target_names[data.target.loc[x.index]]
    with warnings.catch_warnings():
        # scikit-learn 1.9 deprecates probability=True; it still works, and users have it.
        warnings.filterwarnings("ignore", "The `probability` parameter", FutureWarning)
        model = SVC(probability=True, random_state=0).fit(x.iloc[:110], species[:110])
    return Trained(model, x.iloc[:110], x.iloc[110:])


# -- versions and references --------------------------------------------------------------


def test_versions_are_numbered_and_refs_resolve(
    workspace: modelyard.Workspace, logged: LoggedModel
) -> None:
    reg = workspace.registry
    first = reg.register("bc", logged, description="first try")
    second = reg.register("bc", f"runs:/{logged.run_id}/model")
    third = reg.register("bc", logged.uri)

    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert [v.version for v in reg.versions("bc")] == [1, 2, 3]
    assert reg.get("bc").version == 3  # a bare name is the latest version
    assert reg.get("bc@latest").version == 3
    assert reg.get("bc/2") == second
    assert second.ref == "bc/2"
    assert first.description == "first try" and second.description == ""
    assert {v.artifact for v in (first, second, third)} == {logged.artifact}
    assert {v.flavor for v in (first, second, third)} == {"python"}
    assert all(v.run_id == logged.run_id for v in (first, second, third))

    reg.register("another-model", logged)
    listed = reg.list()
    assert [(m.name, m.latest_version) for m in listed] == [("another-model", 1), ("bc", 3)]
    assert listed[1].created_at <= listed[1].updated_at


def test_aliases_set_move_and_delete(workspace: modelyard.Workspace, logged: LoggedModel) -> None:
    reg = workspace.registry
    for _ in range(3):
        reg.register("bc", logged)

    moved_to = reg.set_alias("bc", "production", 1)
    assert moved_to.version == 1 and moved_to.aliases == ("production",)
    reg.set_alias("bc", "champion", 1)
    assert reg.get("bc@production").version == 1
    assert reg.get("bc/1").aliases == ("champion", "production")

    reg.set_alias("bc", "production", 2)  # move
    assert reg.get("bc@production").version == 2
    assert reg.get("bc/1").aliases == ("champion",)
    assert [v.aliases for v in reg.versions("bc")] == [("champion",), ("production",), ()]
    assert reg.list()[0].aliases == {"champion": 1, "production": 2}

    reg.delete_alias("bc", "production")
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        reg.get("bc@production")
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        reg.delete_alias("bc", "production")
    assert reg.list()[0].aliases == {"champion": 1}
    assert reg.get("bc").version == 3  # aliases never change what "latest" means

    with pytest.raises(NotFoundError, match="has no version 9"):
        reg.set_alias("bc", "staging", 9)
    with pytest.raises(NotFoundError, match="not registered"):
        reg.set_alias("nope", "staging", 1)


def test_run_metrics_tags_and_lineage_are_copied(workspace: modelyard.Workspace) -> None:
    train, holdout = EXAMPLE, EXAMPLE.head(2)
    with workspace.start_run("train", params={"C": 1.0}, tags={"team": "a"}, seed=7) as run:
        run.log_dataset("train", train)
        run.log_dataset("holdout", holdout, context="eval")
        run.log_metric("acc", 0.90, step=0)
        run.log_metric("acc", 0.93, step=1)
        run.log_metric("loss", 0.2)
        logged = workspace.registry.log_model(run, double, input_example=train)
    version = workspace.registry.register(
        "bc", logged, description="LR on breast cancer", tags={"owner": "ml-team"}
    )

    assert version.metrics == {"acc": 0.93, "loss": 0.2}
    assert version.tags == {"team": "a", "owner": "ml-team"}
    assert version.description == "LR on breast cancer"
    assert version.run_id == run.run_id
    assert version.lineage["run_id"] == run.run_id
    assert version.lineage["seed"] == 7
    assert "git_commit" in version.lineage
    assert sorted(version.lineage["datasets"], key=lambda d: d["name"]) == [
        {
            "name": "holdout",
            "fingerprint": modelyard.fingerprint(holdout),
            "context": "eval",
            "rows": 2,
        },
        {
            "name": "train",
            "fingerprint": modelyard.fingerprint(train),
            "context": "train",
            "rows": 3,
        },
    ]
    assert workspace.registry.get("bc/1") == version


def test_registering_inside_the_run_sees_the_metrics_logged_so_far(
    workspace: modelyard.Workspace,
) -> None:
    with workspace.start_run("train") as run:
        run.log_metric("acc", 0.91)
        logged = workspace.registry.log_model(run, double, input_example=EXAMPLE)
        version = workspace.registry.register("bc", logged)
    assert version.metrics == {"acc": 0.91}


def test_logged_model_is_an_artifact_of_its_run(
    workspace: modelyard.Workspace, logged: LoggedModel
) -> None:
    assert logged.uri == f"runs:/{logged.run_id}/model"
    artifacts = workspace.runs.get(logged.run_id).artifacts
    assert [(a["path"], a["digest"], a["kind"]) for a in artifacts] == [
        ("model", logged.artifact, "model")
    ]


# -- signatures ---------------------------------------------------------------------------


def test_signature_is_inferred_for_a_classifier_pipeline(
    sqlite_workspace: modelyard.Workspace, breast_cancer_lr: Trained
) -> None:
    example = breast_cancer_lr.train.head()
    logged = log_model(sqlite_workspace, breast_cancer_lr.model, example)
    version = sqlite_workspace.registry.register("bc", logged)
    assert logged.flavor == version.flavor == "sklearn"
    assert version.signature == logged.signature
    inputs = version.signature.inputs
    assert inputs.names == list(example.columns)
    assert "mean radius" in inputs.names
    assert {f.dtype for f in inputs.fields} == {"float64"}
    outputs = version.signature.outputs
    assert [(f.name, f.dtype) for f in outputs.fields] == [
        ("prediction", "int64"),
        ("probability_0", "float64"),
        ("probability_1", "float64"),
    ]


def test_signature_uses_class_names_and_regressors_give_one_column(
    sqlite_workspace: modelyard.Workspace, iris_svc: Trained, diabetes_rf: Trained
) -> None:
    svc = log_model(sqlite_workspace, iris_svc.model, iris_svc.train.head())
    assert [(f.name, f.dtype) for f in svc.signature.outputs.fields] == [
        ("prediction", "string"),
        ("probability_setosa", "float64"),
        ("probability_versicolor", "float64"),
        ("probability_virginica", "float64"),
    ]
    rf = log_model(sqlite_workspace, diabetes_rf.model, diabetes_rf.train.head())
    assert rf.signature.inputs.names == list(diabetes_rf.train.columns)
    assert [(f.name, f.dtype) for f in rf.signature.outputs.fields] == [("prediction", "float64")]


def test_signature_input_types_are_inferred_per_column(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    example = pd.DataFrame(
        {"age": [31, 45], "income": [1.5, None], "city": ["Oslo", "Lima"], "member": [True, False]}
    )
    logged = log_model(sqlite_workspace, lambda df: {"score": df["age"] * 0.5}, example)
    assert [(f.name, f.dtype, f.nullable) for f in logged.signature.inputs.fields] == [
        ("age", "int64", False),
        ("income", "float64", True),
        ("city", "string", False),
        ("member", "bool", False),
    ]
    assert [(f.name, f.dtype) for f in logged.signature.outputs.fields] == [("score", "float64")]


def test_declared_signature_is_kept_and_enforced(sqlite_workspace: modelyard.Workspace) -> None:
    declared = Signature(
        inputs=Schema.of(Field(name="a", dtype="float64", min=0.0)),
        outputs=Schema.of(Field(name="y", dtype="float64", description="twice a")),
    )
    with sqlite_workspace.start_run("train") as run:
        logged = sqlite_workspace.registry.log_model(run, double, signature=declared)
    version = sqlite_workspace.registry.register("doubler", logged)
    assert version.signature == declared

    model = sqlite_workspace.registry.load("doubler")
    assert model.predict([{"a": 2.0}, {"a": 0.5}])["y"].tolist() == [4.0, 1.0]
    with pytest.raises(SchemaValidationError, match="below the minimum"):
        model.predict(pd.DataFrame({"a": [-1.0]}))
    with pytest.raises(SchemaValidationError, match="field 'b': unknown field"):
        model.predict({"a": 1.0, "b": 2.0})


# -- load and predict ---------------------------------------------------------------------


@pytest.mark.parametrize("which", ["breast_cancer_lr", "iris_svc"])
def test_loaded_classifier_predicts_like_the_original(
    sqlite_workspace: modelyard.Workspace, request: pytest.FixtureRequest, which: str
) -> None:
    trained: Trained = request.getfixturevalue(which)
    reg = sqlite_workspace.registry
    reg.register("clf", log_model(sqlite_workspace, trained.model, trained.train.head()))
    loaded = reg.load("clf@latest")
    assert (loaded.name, loaded.number) == ("clf", 1)

    held_out = trained.held_out
    expected_labels = trained.model.predict(held_out).tolist()
    expected_proba = trained.model.predict_proba(held_out)
    for got in (loaded.predict(held_out), loaded.predict(held_out.to_dict(orient="records"))):
        assert got["prediction"].tolist() == expected_labels
        for i, label in enumerate(trained.model.classes_):
            np.testing.assert_allclose(got[f"probability_{label}"], expected_proba[:, i], rtol=1e-9)
    one = loaded.predict(held_out.iloc[0].to_dict())
    assert one["prediction"].tolist() == expected_labels[:1]


def test_lr_pipeline_serving_fast_path_matches(
    sqlite_workspace: modelyard.Workspace, breast_cancer_lr: Trained
) -> None:
    reg = sqlite_workspace.registry
    reg.register(
        "bc", log_model(sqlite_workspace, breast_cancer_lr.model, breast_cancer_lr.train.head())
    )
    loaded = reg.load("bc")
    held_out = breast_cancer_lr.held_out
    body = json.dumps(held_out.to_dict(orient="records")).encode()

    columns, was_a_list = loaded.validator.validate_json(body)
    out = loaded.predict_columns(columns)

    assert was_a_list
    assert list(np.asarray(out["prediction"])) == breast_cancer_lr.model.predict(held_out).tolist()
    np.testing.assert_allclose(
        out["probability_1"], breast_cancer_lr.model.predict_proba(held_out)[:, 1], rtol=1e-9
    )
    single, was_a_list = loaded.validator.validate_json(json.dumps(held_out.iloc[0].to_dict()))
    assert not was_a_list
    assert list(np.asarray(loaded.predict_columns(single)["prediction"])) == [
        breast_cancer_lr.model.predict(held_out.iloc[:1])[0]
    ]


def test_loaded_regressor_predicts_like_the_original(
    sqlite_workspace: modelyard.Workspace, diabetes_rf: Trained
) -> None:
    reg = sqlite_workspace.registry
    reg.register("rf", log_model(sqlite_workspace, diabetes_rf.model, diabetes_rf.train.head()))
    got = reg.load("rf/1").predict(diabetes_rf.held_out)
    assert list(got.columns) == ["prediction"]
    np.testing.assert_allclose(got["prediction"], diabetes_rf.model.predict(diabetes_rf.held_out))


def test_python_flavor_pickles_lambdas_and_closures_by_value(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    factor = 3.0

    def scaled(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": frame["a"] * factor, "big": frame["a"] > 2})

    reg = sqlite_workspace.registry
    reg.register("lam", log_model(sqlite_workspace, lambda df: df["a"].to_numpy() + 1, EXAMPLE))
    reg.register("fn", log_model(sqlite_workspace, scaled, EXAMPLE))
    assert reg.get("fn").flavor == "python"

    # A fresh Workspace on the same folder has only the stored bytes to go on.
    with modelyard.Workspace(sqlite_workspace.root) as fresh:
        lam = fresh.registry.load("lam")
        fn = fresh.registry.load("fn")
        frame = pd.DataFrame({"a": [1.0, 5.0]})
        assert lam.predict(frame)["prediction"].tolist() == [2.0, 6.0]
        got = fn.predict(frame)
    assert got["y"].tolist() == [3.0, 15.0]
    assert got["big"].tolist() == [False, True]
    assert [(f.name, f.dtype) for f in fn.version.signature.outputs.fields] == [
        ("y", "float64"),
        ("big", "bool"),
    ]


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_registrations_get_versions_one_to_n(
    workspace: modelyard.Workspace, metadata_url: str, logged: LoggedModel
) -> None:
    threads, each = 4, 3
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    got: list[int] = []

    def register() -> None:
        # Each writer has its own Workspace (its own connections), like separate processes.
        with modelyard.Workspace(workspace.root, metadata_url=metadata_url) as ws:
            ws.metadata.open()
            try:
                start.wait(timeout=30)
                for _ in range(each):
                    got.append(ws.registry.register("bc", logged).version)
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

    workers = [threading.Thread(target=register) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)

    assert errors == []
    expected = list(range(1, threads * each + 1))
    assert sorted(got) == expected
    assert [v.version for v in workspace.registry.versions("bc")] == expected
    assert workspace.registry.get("bc").version == threads * each


# -- custom flavors -----------------------------------------------------------------------


class Multiplier:
    """A user's own model type; callable too, so the python flavor would also take it."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, frame: pd.DataFrame) -> Any:
        raise AssertionError("the custom flavor, not the python flavor, must handle this")


class MultiplierPredictor:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, frame: pd.DataFrame) -> dict[str, Any]:
        return {"product": frame["a"].to_numpy() * self.factor}


class MultiplierFlavor:
    name = "multiplier"

    def accepts(self, model: object) -> bool:
        return isinstance(model, Multiplier)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        assert isinstance(model, Multiplier)
        (folder / "factor.json").write_text(json.dumps({"factor": model.factor}))
        return {"file": "factor.json"}

    def load(self, folder: Path, settings: dict[str, Any]) -> MultiplierPredictor:
        factor = json.loads((folder / settings["file"]).read_text())["factor"]
        return MultiplierPredictor(factor)


@pytest.fixture
def multiplier_flavor() -> Iterator[MultiplierFlavor]:
    flavor = MultiplierFlavor()
    assert register_flavor(flavor) is flavor
    try:
        yield flavor
    finally:
        FLAVORS.pop(flavor.name, None)


def test_builtin_flavors_are_registered_through_the_public_door() -> None:
    assert {"python", "sklearn"} <= set(FLAVORS)
    assert detect_flavor(LogisticRegression()).name == "sklearn"
    assert detect_flavor(double).name == "python"


def test_custom_flavor_works_like_the_builtins(
    workspace: modelyard.Workspace, multiplier_flavor: MultiplierFlavor
) -> None:
    assert detect_flavor(Multiplier(2.0)) is multiplier_flavor  # later registrations win
    auto = log_model(workspace, Multiplier(2.5), EXAMPLE)
    assert auto.flavor == "multiplier"
    assert [(f.name, f.dtype) for f in auto.signature.outputs.fields] == [("product", "float64")]

    with workspace.start_run("train") as run:
        explicit = workspace.registry.log_model(
            run, Multiplier(4.0), input_example=EXAMPLE, flavor="multiplier"
        )
    first = workspace.registry.register("mult", auto)
    second = workspace.registry.register("mult", explicit.uri)
    assert (first.flavor, second.flavor) == ("multiplier", "multiplier")

    workspace.registry.set_alias("mult", "production", 2)
    loaded = workspace.registry.load("mult@production")
    assert isinstance(loaded.version, ModelVersion) and loaded.number == 2
    assert loaded.predict(pd.DataFrame({"a": [1.0, 2.5]}))["product"].tolist() == [4.0, 10.0]
    assert workspace.registry.load("mult/1").predict({"a": 2.0})["product"].tolist() == [5.0]
