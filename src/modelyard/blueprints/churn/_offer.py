"""The churn model as it is served and scored: a small wrapper, in a module of its own
because a registered version's pickle names it, and loading a model should import
nothing of the pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin


class OfferModel(BaseEstimator, ClassifierMixin):  # type: ignore[misc]
    """The churn model as it is served: the boosted model's probabilities, and as its
    ``prediction`` the offer decision at the cost-tuned ``threshold`` (1: make an offer),
    the decision the daily scores take, rather than the classifier's 0.5 cut."""

    def __init__(self, boosted: Any = None, threshold: float = 0.5) -> None:
        self.boosted = boosted
        self.threshold = threshold

    @property
    def classes_(self) -> np.ndarray:
        found: np.ndarray = self.boosted.classes_
        return found

    def fit(self, x: Any, y: Any) -> OfferModel:
        """Fit the boosted model (the threshold is chosen outside, on held-out rows)."""
        self.boosted.fit(x, y)
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        if not isinstance(x, pd.DataFrame):  # the boosted model was fitted on named columns
            x = pd.DataFrame(x, columns=self.boosted.feature_names_in_)
        found: np.ndarray = self.boosted.predict_proba(x)
        return found

    def predict(self, x: Any) -> np.ndarray:
        return self.predict_from_proba(self.predict_proba(x))

    def predict_from_proba(self, proba: np.ndarray) -> np.ndarray:
        """The decision from probabilities already computed (the sklearn flavor's hook)."""
        return (proba[:, 1] >= self.threshold).astype(np.int64)
