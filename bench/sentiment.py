"""The sentiment blueprint, measured: accuracy of every model, latency in process and
through the server, batching, and the highest request rate the transformer sustains.

Phases (each reads the workspace the ``train`` phase writes, ``bench/out/sentiment-ws``):

- ``train``: the blueprint's models on the real corpus (4,000 reviews; scored on the
  other 1,000): v1 TF-IDF + LR, v2 frozen MiniLM + LR, v3 MiniLM fine-tuned (PyTorch),
  and the same fine-tuned weights as v4 (ONNX fp32, exact) and v5 (ONNX int8).
- ``inproc``: one text at a time (p50/p99 per model) and texts/s for the transformer
  one at a time, in length-sorted batches of 32 and in unsorted batches of 32.
- ``server``: ``modelyard serve`` per model. c=1: 2,000 short texts one after another.
  c=16 for 15 s, batching off and on, PyTorch and ONNX. Open loop at fixed rates: the
  highest rate whose p99 stays under 100 ms, per path.

    .venv/bin/python bench/sentiment.py train inproc server [--epochs 2]

Results: bench/out/sentiment.json; ``--write`` puts the section into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, percentiles  # noqa: E402

OUT = REPO / "bench" / "out"
WS = OUT / "sentiment-ws"
RESULTS = OUT / "sentiment.json"
NAME = "sentiment"


def load_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(results: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- train -------------------------------------------------------------------------------------
def train(epochs: int, max_rows: int | None) -> dict[str, Any]:
    import shutil

    import modelyard
    from modelyard.blueprints import write_template
    from modelyard.blueprints.sentiment import _transformer as tr
    from modelyard.blueprints.sentiment import load_corpus, settings_of, train_baseline
    from modelyard.blueprints.sentiment._train import train_and_register
    from modelyard.registry.flavors import text

    shutil.rmtree(WS, ignore_errors=True)
    write_template("sentiment", WS)
    ws = modelyard.Workspace(WS)
    settings = settings_of(ws)
    corpus = load_corpus(settings)
    say("v1: TF-IDF + logistic regression")
    train_baseline(ws, settings, corpus, alias="production")
    say("v2: frozen MiniLM + logistic regression (ONNX fp32)")
    tr.train_frozen(ws, settings, corpus, alias="frozen")
    say(f"v3: MiniLM fine-tuned, {epochs} epochs (PyTorch)")
    tuned = tr.train_transformer(
        ws,
        settings,
        corpus,
        epochs=epochs,
        max_rows=max_rows,
        onnx=False,
        alias="torch",
        progress=say,
    )

    # The same weights, exported: no second fine-tune, so these versions' train_seconds
    # is the reload only; the fine-tune's cost is v3's.
    def weights() -> Any:
        from modelyard.backends.artifacts import get_tree

        tree = get_tree(ws.registry.artifacts, tuned.artifact, ws.registry.cache_dir)
        settings_ = json.loads((tree / "modelyard-model.json").read_text())["settings"]
        tokenizer = text.load_tokenizer(tree / text.TOKENIZER_FILE, int(settings_["max_tokens"]))
        return text.load_module(tree, settings_, tokenizer)

    for alias, mode in (("onnx", True), ("int8", "int8")):
        say(f"v{4 if mode is True else 5}: the fine-tuned weights as ONNX {alias}")
        train_and_register(
            ws,
            settings,
            corpus,
            kind=f"transformer-{alias}",
            params={"weights_from": tuned.ref, "runtime": alias},
            fit=weights,
            onnx=mode,
            alias=alias,
            description=f"sentiment v{tuned.version}'s fine-tuned weights, ONNX {alias}",
        )
    rows = []
    for v in ws.registry.versions(NAME):
        rows.append(
            {
                "version": v.version,
                "kind": v.tags.get("kind"),
                "aliases": list(v.aliases),
                **{k: v.metrics.get(k) for k in METRIC_KEYS},
            }
        )
        say(f"  v{v.version} {v.tags.get('kind')}: accuracy {v.metrics.get('accuracy'):.4f}")
    return {"versions": rows, "epochs": epochs, "train_rows": len(corpus.train)}


METRIC_KEYS = (
    "accuracy",
    "f1",
    "roc_auc",
    "majority_accuracy",
    "train_seconds",
    "train_peak_rss_mb",
    "eval_ms_per_text",
)


def short_texts() -> list[str]:
    """The held-out reviews, as the service gets them."""
    import modelyard
    from modelyard.blueprints.sentiment import load_corpus, settings_of

    corpus = load_corpus(settings_of(modelyard.Workspace(WS)))
    return [str(t) for t in corpus.test["text"]]


# -- in process --------------------------------------------------------------------------------
REFS = {"baseline": 1, "frozen": 2, "torch": 3, "onnx": 4, "int8": 5}


def inproc() -> dict[str, Any]:
    import modelyard
    from modelyard.registry.flavors.text import TextPredictor

    ws = modelyard.Workspace(WS)
    texts = short_texts()
    out: dict[str, Any] = {
        "mean_chars": float(np.mean([len(t) for t in texts])),
    }
    for label, number in REFS.items():
        model = ws.registry.load(f"{NAME}/{number}")
        calls = 2000 if label == "baseline" else 500
        for t in texts[:50]:  # warm-up
            model.predict_columns({"text": [t], "id": [None], "language": [None]})
        samples = []
        for i in range(calls):
            t = texts[i % len(texts)]
            t0 = time.perf_counter()
            model.predict_columns({"text": [t], "id": [None], "language": [None]})
            samples.append(time.perf_counter() - t0)
        row: dict[str, Any] = {**percentiles(samples), "one_at_a_time_per_s": calls / sum(samples)}
        predictor = model.predictor
        if isinstance(predictor, TextPredictor):
            tokens = predictor.token_counts(texts)
            row["mean_tokens"] = float(np.mean(tokens))
            for name, ordered in (("sorted_32_per_s", True), ("unsorted_32_per_s", False)):
                predictor.sort_by_length = ordered
                t0 = time.perf_counter()
                predictor.predict_texts(texts)
                row[name] = len(texts) / (time.perf_counter() - t0)
            predictor.sort_by_length = True
        out[label] = row
        say(f"  {label}: {json.dumps(row)}")
    return out


# -- through the server ------------------------------------------------------------------------
def serve_cmd(number: int, port: int, batch: int) -> list[str]:
    cmd = [str(REPO / ".venv" / "bin" / "modelyard"), "serve", f"{NAME}/{number}"]
    cmd += ["--port", str(port), "-w", str(WS), "--max-batch-size", str(batch)]
    return cmd + (["--max-latency-ms", "10"] if batch > 1 else [])


def server() -> dict[str, Any]:
    from _load import concurrent, open_loop, sequential
    from _procs import free_port, running

    texts = short_texts()
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    path = f"/v1/models/{NAME}/predict"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out: dict[str, Any] = {}

    def stats(result: Any) -> dict[str, Any]:
        lat = result.latencies
        return {
            **(percentiles(lat) if lat else {}),
            "requests": len(lat),
            "per_s": len(lat) / result.seconds if result.seconds else 0.0,
            "failures": result.failures,
        }

    for label in ("baseline", "torch", "onnx"):
        for batch in (1, 32):
            if label == "baseline" and batch > 1:
                continue
            port = free_port()
            log = OUT / f"sentiment-serve-{label}-{batch}.log"
            key = f"{label}_batch{batch}"
            with running(serve_cmd(REFS[label], port, batch), port, "/readyz", log, env=env):
                row: dict[str, Any] = {}
                if batch == 1:
                    row["c1"] = stats(sequential(port, path, bodies, 2000, warmup=100))
                    say(f"  {key} c=1: {row['c1']}")
                if label != "baseline":
                    row["c16"] = stats(concurrent(port, path, bodies, 16, 15.0))
                    say(f"  {key} c=16: {row['c16']}")
                    row["open_loop"] = rate_search(port, path, bodies, open_loop, stats)
                out[key] = row
    return out


def rate_search(port: int, path: str, bodies: list[bytes], open_loop: Any, stats: Any) -> Any:
    """Fixed rates, rising by a quarter, 10 s each, until p99 passes 100 ms or requests fail."""
    rate, tried, best = 20.0, [], None
    while rate < 2000:
        row = {"rate": rate, **stats(open_loop(port, path, bodies, rate, 10.0))}
        tried.append(row)
        say(f"    open loop {rate:.0f}/s: p99 {row.get('p99_ms')} ms, failures {row['failures']}")
        if row["failures"] or row.get("p99_ms", 1e9) >= 100.0:
            break
        best = rate
        rate = round(rate * 1.25)
    return {"max_rate_p99_under_100ms": best, "tried": tried}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phases", nargs="+", choices=("train", "inproc", "server", "write"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-rows", type=int, default=None, help="fine-tune on fewer (smoke)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = load_results()
    results["machine"] = machine()
    for phase in args.phases:
        started = time.perf_counter()
        if phase == "train":
            results["train"] = train(args.epochs, args.max_rows)
        elif phase == "inproc":
            results["inproc"] = inproc()
        elif phase == "server":
            results["server"] = server()
        save(results)
        say(f"{phase} took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
