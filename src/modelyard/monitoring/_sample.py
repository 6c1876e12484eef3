"""The sample-size rule shared by drift, quality, reports, alert rules and the canary.

Below a minimum, a window gets no verdict: it is "not enough data", never a drifted
column, a quality figure without a caveat, or a firing alert. Drift needs rows: PSI over
10 bins of n rows averages about 9/n with no drift at all, so on 50 rows a third of the
columns pass the 0.2 limit by chance, and one row "drifts" every column; from 200 rows
on, almost none do. Quality needs labels: the accuracy of 100 labelled predictions is
known to about ±0.1 (95%), that of 3 labels to nothing useful.

Both minimums are settings (``monitoring.min_rows``, ``monitoring.min_labels``), so a
low-traffic model can lower them knowingly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from modelyard.config import Config

DEFAULT_MIN_ROWS = 200
DEFAULT_MIN_LABELS = 100

NOT_ENOUGH_DATA = "not_enough_data"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class SampleSize:
    """The minimums a window must reach to be judged."""

    min_rows: int = DEFAULT_MIN_ROWS
    min_labels: int = DEFAULT_MIN_LABELS

    @classmethod
    def of(cls, config: Config) -> SampleSize:
        """The workspace's minimums (``monitoring.min_rows`` and ``monitoring.min_labels``)."""
        found: dict[str, int] = {}
        for name in ("min_rows", "min_labels"):
            key = f"monitoring.{name}"
            found[name] = int(config[key])
            if found[name] < 1:
                raise ConfigError(
                    f"{config.describe(key)}: expected a whole number of 1 or more; fix the value"
                )
        return cls(**found)

    def short_of_rows(self, rows: int) -> str:
        """Why ``rows`` rows are too few to judge drift; empty when they are enough."""
        if rows >= self.min_rows:
            return ""
        return (
            f"not enough data: {_plural(rows, 'row')}, fewer than monitoring.min_rows = "
            f"{self.min_rows}; widen the window or lower monitoring.min_rows"
        )

    def short_of_labels(self, labels: int) -> str:
        """Why ``labels`` labelled predictions are too few for quality; empty when enough."""
        if labels >= self.min_labels:
            return ""
        return (
            f"not enough labels: {_plural(labels, 'labelled prediction')}, fewer than "
            f"monitoring.min_labels = {self.min_labels}; send more labels, widen the window "
            "or lower monitoring.min_labels"
        )
