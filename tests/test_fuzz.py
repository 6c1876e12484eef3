"""A fuzz pass: schemathesis against the served OpenAPI document, in process (ASGI).

Two servers, as users run them: the quickstart's tabular scikit-learn model, and a
text model (one string field). Every documented operation gets generated requests,
valid ones and invalid ones, and each answer is checked: no 5xx, a status code and a
content type the document declares, a body that matches the declared schema. The
number of examples is bounded so the whole file stays well under a minute.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import hypothesis.errors
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from modelyard.contracts import Field, Schema
from modelyard.registry import Signature
from modelyard.serving import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12  # per operation and generation mode; ~20 operations a server

REVIEWS = [
    "Works great, the battery lasts all day and it charges fast.",
    "Stopped working after a week; the support never answered.",
    "Decent value for the price, though the strap feels cheap.",
]


def _sentiment(frame: pd.DataFrame) -> pd.DataFrame:
    """A keyword text model: enough to be served like the sentiment blueprint's."""
    good = frame["text"].str.contains("great|love|good", case=False).astype(float)
    p = 0.2 + 0.6 * good
    return pd.DataFrame(
        {
            "prediction": ["great" if v > 0.5 else "other" for v in p],
            "probability": p.where(p > 0.5, 1 - p),
            "probability_great": p,
            "probability_other": 1 - p,
        }
    )


TEXT_SIGNATURE = Signature(
    inputs=Schema.of(Field(name="text", dtype="string", min_length=1, max_length=2000)),
    outputs=Schema.of(
        Field(name="prediction", dtype="string"),
        Field(name="probability", dtype="float64"),
        Field(name="probability_great", dtype="float64"),
        Field(name="probability_other", dtype="float64"),
    ),
)


@pytest.fixture
def ws(sqlite_workspace: modelyard.Workspace) -> modelyard.Workspace:
    ws = sqlite_workspace
    data = load_breast_cancer(as_frame=True)
    x, y = data.data, data.target.map({0: "malignant", 1: "benign"})
    with ws.start_run("quickstart") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(20), reference_data=x)
    ws.registry.set_alias("cancer", "production", ws.registry.register("cancer", logged).version)
    with ws.start_run("text") as run:
        example = pd.DataFrame({"text": REVIEWS})
        logged = ws.registry.log_model(
            run, _sentiment, signature=TEXT_SIGNATURE, input_example=example
        )
    ws.registry.set_alias(
        "sentiment", "production", ws.registry.register("sentiment", logged).version
    )
    return ws


def _fuzz(app: Any) -> list[str]:
    """Every failure schemathesis finds over every operation of ``app``'s document."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: Any) -> None:
                    case.call_and_validate(checks=CHECKS)

                try:
                    check()
                except hypothesis.errors.Unsatisfiable:
                    pass  # no parameters and no body: nothing invalid to send
                except (Exception, BaseExceptionGroup) as exc:  # one report per operation, mode
                    failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    finally:
        shutdown_lifespans()
    return failures


def test_fuzz_the_quickstart_model_server(ws: modelyard.Workspace) -> None:
    app = create_app(ws.registry, ["cancer@production"], prediction_log=ws.predictions)
    failures = _fuzz(app)
    assert not failures, "\n\n".join(failures)


def test_fuzz_the_text_model_server(ws: modelyard.Workspace) -> None:
    app = create_app(ws.registry, ["sentiment@production"], prediction_log=ws.predictions)
    failures = _fuzz(app)
    assert not failures, "\n\n".join(failures)
