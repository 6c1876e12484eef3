"""Flavors beyond the basics: ``torch``, ``lightgbm``, ``xgboost``, and onnxruntime for sklearn.

Every model is trained on real data (breast cancer, diabetes, iris), logged, registered,
loaded and compared with the original on held-out rows, through the DataFrame path and
the numeric array fast path that serving takes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
import xgboost as xgb
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import modelyard
from modelyard.errors import InvalidInputError
from modelyard.registry import LoadedModel
from modelyard.registry._flavors import detect_flavor
from modelyard.registry.flavors import TorchFlavor
from modelyard.registry.flavors.onnx import TOLERANCE, OnnxPredictor
from registry_support import EXAMPLE, double

Split = tuple[pd.DataFrame, pd.Series, pd.DataFrame]


@pytest.fixture(scope="module")
def cancer() -> Split:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x.iloc[:450], y.iloc[:450], x.iloc[450:]


@pytest.fixture(scope="module")
def diabetes() -> Split:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    return x.iloc[:350], y.iloc[:350], x.iloc[350:]


@pytest.fixture(scope="module")
def iris() -> Split:
    x, y = load_iris(return_X_y=True, as_frame=True)
    x, y = x.sample(frac=1.0, random_state=0), y.sample(frac=1.0, random_state=0)
    return x.iloc[:110], y.iloc[:110], x.iloc[110:]


def classified(model: Any, held_out: pd.DataFrame) -> dict[str, Any]:
    """What the sklearn flavor answers for a classifier: labels, then one column per class."""
    proba = model.predict_proba(held_out)
    out = {"prediction": model.predict(held_out)}
    out.update({f"probability_{c}": proba[:, i] for i, c in enumerate(model.classes_)})
    return out


def log_and_load(
    ws: modelyard.Workspace, model: object, train: pd.DataFrame, **options: Any
) -> LoadedModel:
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(run, model, input_example=train.head(20), **options)
    ws.registry.register("m", logged)
    return ws.registry.load("m")


def assert_predicts(
    loaded: LoadedModel, held_out: pd.DataFrame, expected: dict[str, Any], *, rtol: float = 1e-6
) -> None:
    """Both paths give the expected columns: labels equal, floats within ``rtol``."""
    fast = loaded.predict_columns({c: held_out[c].tolist() for c in held_out.columns})
    for got in (loaded.predict(held_out), fast):
        assert list(got) == list(expected)
        for name, want in expected.items():
            values = np.asarray(got[name])
            if np.asarray(want).dtype.kind == "f":
                np.testing.assert_allclose(values, want, rtol=rtol, atol=rtol, err_msg=name)
            else:
                assert values.tolist() == np.asarray(want).tolist(), name


# -- torch ----------------------------------------------------------------------------------


class MLP(torch.nn.Module):
    """Standardises its inputs itself, so it takes raw feature rows; answers two logits."""

    def __init__(self, train: pd.DataFrame) -> None:
        super().__init__()
        x = torch.tensor(train.to_numpy(), dtype=torch.float32)
        self.register_buffer("mean", x.mean(dim=0))
        self.register_buffer("std", x.std(dim=0))
        self.net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def mlp(cancer: Split) -> MLP:
    train, y, _ = cancer
    torch.manual_seed(0)
    model = MLP(train)
    x = torch.tensor(train.to_numpy(), dtype=torch.float32)
    target = torch.tensor(y.to_numpy())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):  # a few full-batch epochs: enough to learn, not what is tested
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()
    with torch.no_grad():
        assert (model(x).argmax(dim=1) == target).float().mean() > 0.95  # it did learn
    return model.eval()


def logits(model: torch.nn.Module, held_out: pd.DataFrame) -> dict[str, Any]:
    with torch.no_grad():
        out = model(torch.tensor(held_out.to_numpy(), dtype=torch.float32)).numpy()
    return {f"output_{i}": out[:, i] for i in range(out.shape[1])}


def test_torch_mlp_round_trip(
    sqlite_workspace: modelyard.Workspace, cancer: Split, mlp: MLP
) -> None:
    train, _, held_out = cancer
    loaded = log_and_load(sqlite_workspace, mlp, train)
    assert loaded.version.flavor == "torch"
    assert loaded._array_path is True
    assert_predicts(loaded, held_out, logits(mlp, held_out))
    assert [(f.name, f.dtype) for f in loaded.version.signature.outputs.fields] == [
        ("output_0", "float64"),
        ("output_1", "float64"),
    ]


def test_torch_model_loads_without_its_class_being_importable(
    sqlite_workspace: modelyard.Workspace, cancer: Split, mlp: MLP, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, _, held_out = cancer
    with sqlite_workspace.start_run("train") as run:
        logged = sqlite_workspace.registry.log_model(run, mlp, input_example=train.head())
    sqlite_workspace.registry.register("mlp", logged)
    assert MLP.__module__ not in cloudpickle.list_registry_pickle_by_value()  # put back

    # An import of this test module now fails; a pickle by reference would need one.
    monkeypatch.setitem(sys.modules, MLP.__module__, None)
    with modelyard.Workspace(sqlite_workspace.root) as fresh:
        got = fresh.registry.load("mlp").predict(held_out)
    np.testing.assert_allclose(got["output_1"], logits(mlp, held_out)["output_1"], rtol=1e-6)


def test_torch_single_output_is_the_prediction_and_device_is_chosen_at_load(
    sqlite_workspace: modelyard.Workspace, diabetes: Split, tmp_path: Path
) -> None:
    train, _, held_out = diabetes
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(train.shape[1], 1))  # answers (n, 1)
    loaded = log_and_load(sqlite_workspace, model, train)
    with torch.no_grad():
        want = model(torch.tensor(held_out.to_numpy(), dtype=torch.float32)).numpy().reshape(-1)
    assert_predicts(loaded, held_out, {"prediction": want})

    settings = TorchFlavor().save(model, tmp_path)
    assert settings["device"] == "cpu"
    on_gpu = TorchFlavor(device="cuda").load(tmp_path, settings)
    assert on_gpu.device == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidInputError, match="use 'cpu' or 'cuda'"):
        TorchFlavor(device="tpu").load(tmp_path, settings)


# torch 2.13 deprecates TorchScript; a ScriptModule the user made is still saved as one.
@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")
def test_torch_script_module_is_saved_with_torchscript(
    sqlite_workspace: modelyard.Workspace, cancer: Split
) -> None:
    train, _, held_out = cancer
    torch.manual_seed(0)
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(train.shape[1], 2)))
    loaded = log_and_load(sqlite_workspace, scripted, train)
    assert_predicts(loaded, held_out, logits(scripted, held_out))


# -- lightgbm and xgboost -------------------------------------------------------------------


def lgb_classifier(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = cancer
    labels = y.map({0: "malignant", 1: "benign"})  # string classes name the columns
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=8, n_jobs=1, verbose=-1)
    model.fit(train, labels)
    return model, cancer, classified(model, held_out)


def lgb_regressor(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = diabetes
    model = lgb.LGBMRegressor(n_estimators=30, num_leaves=8, n_jobs=1, verbose=-1).fit(train, y)
    return model, diabetes, {"prediction": model.predict(held_out)}


def lgb_booster(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = iris
    params = {"objective": "multiclass", "num_class": 3, "num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(train, y), num_boost_round=10)
    proba = booster.predict(held_out)
    return booster, iris, {f"output_{i}": proba[:, i] for i in range(3)}


def xgb_classifier(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = iris
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(train, y)
    return model, iris, classified(model, held_out)


def xgb_binary(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = cancer
    test_x, test_y = train.iloc[-50:], y.iloc[-50:]
    model = xgb.XGBClassifier(n_estimators=50, max_depth=3, n_jobs=1, early_stopping_rounds=3)
    model.fit(train.iloc[:-50], y.iloc[:-50], eval_set=[(test_x, test_y)], verbose=False)
    assert model.best_iteration < 49  # stopped early: the loaded model must stop there too
    return model, cancer, classified(model, held_out)


def xgb_regressor(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = diabetes
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(train, y)
    return model, diabetes, {"prediction": model.predict(held_out)}


def xgb_booster(cancer: Split, diabetes: Split, iris: Split) -> tuple[Any, Split, Any]:
    train, y, held_out = diabetes
    params = {"objective": "reg:squarederror", "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(train.to_numpy(), y.to_numpy()), num_boost_round=10)
    return booster, diabetes, {"prediction": booster.predict(xgb.DMatrix(held_out.to_numpy()))}


Case = Callable[[Split, Split, Split], tuple[Any, Split, Any]]


@pytest.mark.parametrize(
    ("flavor", "case"),
    [
        ("lightgbm", lgb_classifier),
        ("lightgbm", lgb_regressor),
        ("lightgbm", lgb_booster),
        ("xgboost", xgb_classifier),
        ("xgboost", xgb_binary),
        ("xgboost", xgb_regressor),
        ("xgboost", xgb_booster),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_boosted_model_round_trip(
    sqlite_workspace: modelyard.Workspace,
    cancer: Split,
    diabetes: Split,
    iris: Split,
    flavor: str,
    case: Case,
) -> None:
    model, (train, _, held_out), expected = case(cancer, diabetes, iris)
    assert detect_flavor(model).name == flavor
    loaded = log_and_load(sqlite_workspace, model, train)
    assert loaded.version.flavor == flavor
    assert loaded._array_path is True
    assert_predicts(loaded, held_out, expected)
    outputs = loaded.version.signature.outputs
    assert outputs.names == list(expected)
    if "probability_benign" in expected:
        assert outputs["prediction"].dtype == "string"


def test_saved_in_the_librarys_own_format_not_pickle(
    sqlite_workspace: modelyard.Workspace, diabetes: Split, tmp_path: Path
) -> None:
    from modelyard.registry.flavors import LightGBMFlavor, XGBoostFlavor

    train, y, _ = diabetes
    lgb_model = lgb.LGBMRegressor(n_estimators=5, n_jobs=1, verbose=-1).fit(train, y)
    xgb_model = xgb.XGBRegressor(n_estimators=5, n_jobs=1).fit(train, y)
    lgb_settings = LightGBMFlavor().save(lgb_model, tmp_path)
    xgb_settings = XGBoostFlavor().save(xgb_model, tmp_path)
    assert (lgb_settings["kind"], xgb_settings["kind"]) == ("regressor", "regressor")
    assert (tmp_path / lgb_settings["file"]).read_text().startswith("tree\n")
    assert (tmp_path / xgb_settings["file"]).read_text().startswith("{")
    with pytest.raises(InvalidInputError, match="not fitted; call fit"):
        LightGBMFlavor().save(lgb.LGBMClassifier(), tmp_path)


def test_detection_prefers_the_specific_flavors() -> None:
    assert detect_flavor(lgb.LGBMClassifier()).name == "lightgbm"
    assert detect_flavor(xgb.XGBRegressor()).name == "xgboost"
    assert detect_flavor(torch.nn.Linear(2, 1)).name == "torch"  # callable, but not "python"
    assert detect_flavor(LogisticRegression()).name == "sklearn"
    assert detect_flavor(double).name == "python"


def test_importing_modelyard_imports_no_ml_library() -> None:
    heavy = "{'torch', 'lightgbm', 'xgboost', 'onnxruntime', 'skl2onnx'}"
    code = f"import sys, modelyard, modelyard.registry; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- onnxruntime for scikit-learn -----------------------------------------------------------


def onnx_settings(ws: modelyard.Workspace, loaded: LoadedModel) -> dict[str, Any]:
    return ws.registry._read_meta(loaded.version.artifact)["settings"]  # type: ignore[no-any-return]


def test_a_classifier_that_decides_at_its_own_threshold_is_answered_by_its_predict(
    sqlite_workspace: modelyard.Workspace, cancer: Split
) -> None:
    """argmax over the probabilities is a shortcut for predict() only where the two agree:
    a threshold classifier's prediction must be its own (a cost-tuned cut, say)."""
    from sklearn.model_selection import FixedThresholdClassifier

    train, y, held_out = cancer
    model = FixedThresholdClassifier(LogisticRegression(max_iter=5000), threshold=0.9)
    model.fit(train, y)
    assert (model.predict(held_out) != model.predict_proba(held_out).argmax(axis=1)).any()
    assert_predicts(
        log_and_load(sqlite_workspace, model, train), held_out, classified(model, held_out)
    )


def test_onnx_kept_when_exact_and_predicts_like_sklearn(
    sqlite_workspace: modelyard.Workspace, cancer: Split
) -> None:
    train, y, held_out = cancer
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=1000))])
    model.fit(train, y)
    loaded = log_and_load(sqlite_workspace, model, train, onnx=True)

    settings = onnx_settings(sqlite_workspace, loaded)
    assert settings["runtime"] == "onnxruntime"
    assert (settings["onnx_inputs"], settings["onnx_dtype"]) == ("tensor", "float64")
    assert isinstance(loaded.predictor, OnnxPredictor)
    assert loaded.predictor.session.get_session_options().intra_op_num_threads == 1
    assert loaded._array_path is True
    assert [(f.name, f.dtype) for f in loaded.version.signature.outputs.fields] == [
        ("prediction", "int64"),
        ("probability_0", "float64"),
        ("probability_1", "float64"),
    ]
    assert_predicts(loaded, held_out, classified(model, held_out), rtol=TOLERANCE)


def test_onnx_float32_trees_are_kept_within_the_relative_tolerance(
    sqlite_workspace: modelyard.Workspace, diabetes: Split
) -> None:
    train, y, held_out = diabetes
    model = RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0).fit(train, y)
    loaded = log_and_load(sqlite_workspace, model, train, onnx=True)
    # onnxruntime's tree ensembles take float32 only: the float64 layout is refused.
    assert onnx_settings(sqlite_workspace, loaded)["onnx_dtype"] == "float32"
    assert_predicts(loaded, held_out, {"prediction": model.predict(held_out)}, rtol=TOLERANCE)


def test_onnx_text_columns_get_one_input_each(sqlite_workspace: modelyard.Workspace) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"age": rng.integers(18, 80, 200), "city": rng.choice(["Oslo", "Lima", "Pune"], 200)}
    )
    y = (frame["age"] > 40) ^ (frame["city"] == "Lima")
    encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    model = Pipeline([("encode", encode), ("lr", LogisticRegression())]).fit(frame, y)
    loaded = log_and_load(sqlite_workspace, model, frame.iloc[:150], onnx=True)
    assert onnx_settings(sqlite_workspace, loaded)["onnx_inputs"] == "columns"
    assert loaded._array_path is False
    held_out = frame.iloc[150:]
    got = loaded.predict(held_out)
    assert got["prediction"].tolist() == model.predict(held_out).tolist()
    np.testing.assert_allclose(
        got["probability_True"], model.predict_proba(held_out)[:, 1], atol=TOLERANCE
    )


def test_onnx_unsupported_model_is_refused_with_the_remedy(
    sqlite_workspace: modelyard.Workspace, diabetes: Split
) -> None:
    train, y, _ = diabetes
    custom = Pipeline([("log", FunctionTransformer(np.log1p)), ("lr", LinearRegression())])
    custom.fit(train.abs(), y)
    with pytest.raises(InvalidInputError, match=r"cannot be converted to ONNX \(.*FunctionTrans"):
        log_and_load(sqlite_workspace, custom, train.abs(), onnx=True)
    with pytest.raises(InvalidInputError, match="not a 'python' model; log it without onnx=True"):
        log_and_load(sqlite_workspace, double, EXAMPLE, onnx=True)


def test_onnx_inexact_conversion_is_refused_and_nothing_is_logged(
    workspace: modelyard.Workspace, cancer: Split
) -> None:
    train, y, _ = cancer
    # Isotonic calibration converts, but onnxruntime's probabilities differ by ~0.05.
    model = CalibratedClassifierCV(GaussianNB(), method="isotonic").fit(train, y)
    with workspace.start_run("train") as run:
        with pytest.raises(InvalidInputError) as caught:
            workspace.registry.log_model(run, model, input_example=train, onnx=True)
    message = str(caught.value)
    assert "the ONNX conversion of CalibratedClassifierCV is not exact on the 100 example rows" in (
        message
    )
    assert "differs by up to 0.0" in message
    assert message.endswith("log it without onnx=True to serve it with scikit-learn")
    assert workspace.runs.get(run.run_id).artifacts == []
    assert workspace.registry.list() == []
