"""Prediction drift: a version's reference profile holds its outputs beside its inputs
(``log_model(..., reference_outputs=)``), and drift over logged traffic follows the
prediction distribution; batch scores logged at a given time land in that time's window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import modelyard
from cli_support import run_cli
from modelyard.errors import InvalidInputError
from modelyard.monitoring import window_drift
from modelyard.serving import score

COLUMNS = ["mean radius", "mean texture", "mean smoothness", "worst area"]
THEN = datetime(2026, 3, 1, 2, tzinfo=UTC)


def _data() -> tuple[pd.DataFrame, pd.Series]:
    data = load_breast_cancer(as_frame=True)
    return data.data[COLUMNS].rename(columns=lambda c: c.replace(" ", "_")), data.target


def _register(ws: modelyard.Workspace) -> pd.DataFrame:
    """Register a model whose reference holds its outputs as ``tumour@production``."""
    x, y = _data()
    model = LogisticRegression(max_iter=5000).fit(x, y)
    with ws.start_run("fit") as run:
        logged = ws.registry.log_model(
            run,
            model,
            input_example=x.head(10),
            reference_data=x,
            reference_outputs=_outputs(model, x),
        )
    version = ws.registry.register("tumour", logged)
    ws.registry.set_alias("tumour", "production", version.version)
    return x


def _outputs(model: LogisticRegression, x: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(model.predict_proba(x), columns=["probability_0", "probability_1"])


def test_the_reference_profile_holds_the_outputs_and_drift_follows_them(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    x = _register(ws)
    reference = ws.registry.reference_profile(ws.registry.get("tumour@production"))
    assert reference is not None
    assert {"output.probability_0", "output.probability_1"} <= set(reference.columns)
    # Only the largest tumours come in: the inputs and the predictions both shift.
    big = x[x["worst_area"] > x["worst_area"].quantile(0.6)]
    source = tmp_path / "big.parquet"
    big.to_parquet(source)
    score(
        ws.registry,
        "tumour@production",
        source,
        tmp_path / "out.parquet",
        executor="local",
        prediction_log=ws.predictions,
        logged_at=THEN,
    )
    _, report = window_drift(
        ws.registry,
        "tumour@production",
        ws.predictions,
        timedelta(days=1),
        now=THEN + timedelta(hours=1),
        min_rows=50,
    )
    assert report.status == "ok" and report.rows_current == len(big)
    assert "output.probability_1" in report.drifted_columns  # the predictions moved
    assert "worst_area" in report.drifted_columns
    # The rows were logged at the time given, not when they were scored: a window
    # ending now (years later) holds none of them.
    with pytest.raises(InvalidInputError, match="no predictions"):
        window_drift(ws.registry, "tumour@production", ws.predictions, timedelta(days=1))


def test_a_file_of_inputs_is_compared_on_its_inputs(
    sqlite_workspace: modelyard.Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = sqlite_workspace
    x = _register(ws)
    x.head(300).to_parquet(tmp_path / "inputs.parquet")
    code, out, err = run_cli(
        capsys,
        "monitor",
        "drift",
        "tumour@production",
        "--current",
        str(tmp_path / "inputs.parquet"),
        "--json",
        "-w",
        str(ws.config.root),
    )
    assert code == 0, err
    assert "output." not in out and "worst_area" in out


def test_reference_outputs_must_match_the_reference_rows_and_the_outputs(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    ws = sqlite_workspace
    x, y = _data()
    model = LogisticRegression(max_iter=5000).fit(x, y)
    outputs = _outputs(model, x)
    with ws.start_run("fit") as run:
        with pytest.raises(InvalidInputError, match="pass both"):
            ws.registry.log_model(run, model, input_example=x.head(), reference_outputs=outputs)
        with pytest.raises(InvalidInputError, match="has 10 rows but reference_data has"):
            ws.registry.log_model(
                run,
                model,
                input_example=x.head(),
                reference_data=x,
                reference_outputs=outputs.head(10),
            )
        with pytest.raises(InvalidInputError, match="none of the model's outputs"):
            ws.registry.log_model(
                run,
                model,
                input_example=x.head(),
                reference_data=x,
                reference_outputs=outputs.rename(columns=lambda c: c.upper()),
            )
