"""BentoML side of bench/serving.py: the same pickled LogisticRegression behind one API.

Runs under bench/.venv-bentoml (``bentoml serve _bentoml_service:LogisticRegression``, from
bench/). It imports nothing from modelyard. Settings come from the environment that
bench/serving.py sets, so one file serves every configuration it measures:

- BENCH_MODEL_PATH: the pickled model (written by bench/serving.py in its venv);
- BENCH_WORKERS: BentoML worker processes (``@bentoml.service(workers=...)``);
- BENCH_MAX_BATCH_SIZE, BENCH_MAX_LATENCY_MS: adaptive batching on the API
  (``@bentoml.api(batchable=True, ...)``); BENCH_MAX_BATCH_SIZE=0 turns batching off.

The request body is ``{"rows": [[f0, ..., f19]]}``; the answer is ``predict_proba`` of the
rows, the same probabilities modelyard's answer carries.
"""

from __future__ import annotations

import os
import pickle
import warnings

import bentoml
import numpy as np

WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
MAX_BATCH_SIZE = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "64"))
MAX_LATENCY_MS = int(os.environ.get("BENCH_MAX_LATENCY_MS", "60000"))

# The model was fitted on a DataFrame; BentoML hands it arrays, and scikit-learn would
# warn about the missing column names on every call.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@bentoml.service(workers=WORKERS)
class LogisticRegression:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL_PATH"], "rb") as f:
            self.model = pickle.load(f)  # noqa: S301 - a file this benchmark just wrote

    if MAX_BATCH_SIZE > 0:

        @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return self.model.predict_proba(rows)

    else:

        @bentoml.api
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return self.model.predict_proba(rows)
