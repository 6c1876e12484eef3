"""MLflow side of bench/serving.py: save the pickled model as an MLflow model folder.

Runs under bench/.venv-mlflow/bin/python: ``_mlflow_serving_model.py MODEL.pkl OUT_DIR``.
``mlflow models serve -m OUT_DIR`` then serves it; the pyfunc answers ``predict_proba``,
the same probabilities modelyard's answer carries. Imports nothing from modelyard.
"""

from __future__ import annotations

import os
import pickle
import sys

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, "rb") as f:
        model = pickle.load(f)  # noqa: S301 - a file the benchmark just wrote
    names = list(model.feature_names_in_)
    example = pd.DataFrame([[0.0] * len(names)], columns=names)
    mlflow.sklearn.save_model(
        model,
        target,
        signature=infer_signature(example, model.predict_proba(example)),
        pyfunc_predict_fn="predict_proba",
    )
    print(mlflow.__version__)


if __name__ == "__main__":
    main()
