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
from _common import REPO, machine, percentiles, write_section  # noqa: E402

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


SHORT_CHARS = 300


def held_out_texts() -> list[str]:
    """The 1,000 held-out reviews, as the service gets them."""
    import modelyard
    from modelyard.blueprints.sentiment import load_corpus, settings_of

    corpus = load_corpus(settings_of(modelyard.Workspace(WS)))
    return [str(t) for t in corpus.test["text"]]


def short_texts() -> list[str]:
    """Held-out reviews of at most 300 characters (539 of them: mean 182 characters, 46
    tokens): the short texts the latency targets are about."""
    return [t for t in held_out_texts() if len(t) <= SHORT_CHARS]


# -- in process --------------------------------------------------------------------------------
REFS = {"baseline": 1, "frozen": 2, "torch": 3, "onnx": 4, "int8": 5}


def inproc() -> dict[str, Any]:
    import modelyard
    from modelyard.registry.flavors.text import TextPredictor

    ws = modelyard.Workspace(WS)
    texts, mixed = short_texts(), held_out_texts()
    out: dict[str, Any] = {
        "short_texts": len(texts),
        "short_mean_chars": float(np.mean([len(t) for t in texts])),
        "mixed_mean_chars": float(np.mean([len(t) for t in mixed])),
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
            row["short_mean_tokens"] = float(np.mean(predictor.token_counts(texts)))
            row["mixed_mean_tokens"] = float(np.mean(predictor.token_counts(mixed)))
            # Batches of 32 in the order the texts came, or sorted by length first; on
            # the short texts and on all 1,000 held-out reviews (mixed lengths).
            for corpus, rows in (("short", texts), ("mixed", mixed)):
                for name, ordered in (("sorted", True), ("unsorted", False)):
                    predictor.sort_by_length = ordered
                    t0 = time.perf_counter()
                    predictor.predict_texts(rows)
                    row[f"{corpus}_{name}_32_per_s"] = len(rows) / (time.perf_counter() - t0)
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


# -- the report --------------------------------------------------------------------------------
HEADER = "## Sentiment blueprint (issue 13)"


def _f(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        HEADER,
        "",
        "```",
        ".venv/bin/python bench/sentiment.py train inproc server write   # about 25 minutes",
        "```",
        "",
        f"modelyard at `{m['modelyard_commit']}`, {m['nproc']} cores, Python {m['python']}, "
        "CPU only (no GPU was lent to this task). Raw numbers: `bench/out/sentiment.json`.",
        "",
        "**Accuracy on the 1,000 held-out reviews** (`modeldata/testing_data`; trained on "
        f"the {r['train']['train_rows']:,} of `training_data`), each scored as registered "
        "(the logged artifact, through the runtime it serves with):",
        "",
        "| version | model | accuracy | F1 (macro) | ROC AUC | majority class | "
        "training s | peak RSS MB | scoring ms/text |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in r["train"]["versions"]:
        lines.append(
            f"| {v['version']} | {v['kind']} | {_f(v['accuracy'], 3)} | {_f(v['f1'], 3)} | "
            f"{_f(v['roc_auc'], 3)} | {_f(v['majority_accuracy'], 3)} | "
            f"{_f(v['train_seconds'])} | {_f(v['train_peak_rss_mb'], 0)} | "
            f"{_f(v['eval_ms_per_text'], 2)} |"
        )
    ip = r["inproc"]
    lines += [
        "",
        f"**In process**, one text at a time through `LoadedModel.predict_columns`, on the "
        f"{ip['short_texts']} held-out reviews of at most {SHORT_CHARS} characters (mean "
        f"{ip['short_mean_chars']:.0f} characters, {ip['torch']['short_mean_tokens']:.0f} "
        f"tokens); batches of 32 on those and on all 1,000 (mean "
        f"{ip['mixed_mean_chars']:.0f} characters, {ip['torch']['mixed_mean_tokens']:.0f} "
        "tokens), in arrival order or sorted by length:",
        "",
        "| model | p50 ms | p99 ms | texts/s one at a time | short: sorted 32 | "
        "short: unsorted 32 | all: sorted 32 | all: unsorted 32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in REFS:
        row = ip[label]
        cells = [
            _f(row.get(k), 0)
            for k in (
                "short_sorted_32_per_s",
                "short_unsorted_32_per_s",
                "mixed_sorted_32_per_s",
                "mixed_unsorted_32_per_s",
            )
        ]
        lines.append(
            f"| {label} | {_f(row['p50_ms'], 2)} | {_f(row['p99_ms'], 2)} | "
            f"{_f(row['one_at_a_time_per_s'], 0)} | " + " | ".join(cells) + " |"
        )
    sv = r["server"]
    base, torch_, onnx_ = sv["baseline_batch1"], sv["torch_batch1"], sv["onnx_batch1"]
    lines += [
        "",
        "**Through the server** (`modelyard serve sentiment/N`, prediction log on, one "
        "process), concurrency 1, 2,000 requests of the short texts after 100 untimed:",
        "",
        "| model | p50 ms | p99 ms | target | met? |",
        "| --- | ---: | ---: | --- | --- |",
        f"| v1 TF-IDF + LR | {_f(base['c1']['p50_ms'], 2)} | {_f(base['c1']['p99_ms'], 2)} | "
        f"p99 < 3 ms | {_met(base['c1']['p99_ms'] < 3)} |",
        f"| v3 MiniLM, PyTorch | {_f(torch_['c1']['p50_ms'], 2)} | "
        f"{_f(torch_['c1']['p99_ms'], 2)} | p99 < 20 ms | {_met(torch_['c1']['p99_ms'] < 20)} |",
        f"| v4 MiniLM, ONNX Runtime fp32 | {_f(onnx_['c1']['p50_ms'], 2)} | "
        f"{_f(onnx_['c1']['p99_ms'], 2)} | p99 < 20 ms | {_met(onnx_['c1']['p99_ms'] < 20)} |",
        "",
        "Concurrency 16 for 15 s, all 1,000 held-out reviews in turn (mixed lengths); "
        "batching on is `--max-batch-size 32 --max-latency-ms 10`:",
        "",
        "| path | batching | requests/s | p50 ms | p99 ms | on/off | target | met? |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for label, target in (("torch", 1.5), ("onnx", 1.0)):
        off, on = sv[f"{label}_batch1"]["c16"], sv[f"{label}_batch32"]["c16"]
        ratio = on["per_s"] / off["per_s"] if off["per_s"] else 0.0
        lines.append(
            f"| {label} | off | {_f(off['per_s'])} | {_f(off.get('p50_ms'))} | "
            f"{_f(off.get('p99_ms'))} | | | |"
        )
        lines.append(
            f"| {label} | on | {_f(on['per_s'])} | {_f(on.get('p50_ms'))} | "
            f"{_f(on.get('p99_ms'))} | {ratio:.2f}x | >= {target}x | {_met(ratio >= target)} |"
        )
    lines += [
        "",
        "Open loop (requests sent at a fixed rate whatever the answers do, latency from each "
        "request's scheduled time), rates rising by a quarter from 20/s, 10 s each: the "
        "highest rate whose p99 stayed under 100 ms, the figure to size replicas with:",
        "",
        "| path | batching | highest rate with p99 < 100 ms | p99 there | next rate tried: p99 |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for key in ("torch_batch1", "torch_batch32", "onnx_batch1", "onnx_batch32"):
        ol = sv[key]["open_loop"]
        tried = ol["tried"]
        best = next((t for t in tried if t["rate"] == ol["max_rate_p99_under_100ms"]), None)
        nxt = tried[-1] if tried and (best is None or tried[-1] is not best) else None
        label, batch = key.split("_batch")
        after = "" if nxt is None else f"{nxt['rate']:.0f}/s: {_f(nxt.get('p99_ms'))} ms"
        lines.append(
            f"| {label} | {'on' if batch != '1' else 'off'} | "
            f"{_f(ol['max_rate_p99_under_100ms'], 0)}/s | "
            f"{_f(best.get('p99_ms') if best else None)} ms | {after} |"
        )
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "Notes, read with the tables:",
    "",
    "- **Run to run.** An earlier full run on this machine (commit `5983a87`, chunks not yet "
    "capped at 1.5x their shortest text) measured v1 at c=1 p99 **2.38 ms (met)**, ONNX at "
    "c=1 p99 17.98 ms, in process ONNX p50/p99 7.32/12.71 ms and PyTorch 13.14/18.56 ms, "
    "and ONNX with batching on 107 against 121 requests/s off. The baseline's 3 ms target "
    "is therefore met in one run and missed in the other: its p99 is the prediction log's "
    "periodic flush as much as the model (p50 is 2 ms, of which the model takes 1).",
    "- **PyTorch misses p99 < 20 ms through the server (25.4 ms); ONNX Runtime meets it "
    '(13.9 ms).** The blueprint serves the transformer from ONNX (`onnx = "auto"`), '
    "which answers exactly as PyTorch does (checked on 20 rows at registration, largest "
    "probability difference under 1e-6 here) at about 1.6x the single-call speed.",
    "- **Batching on the ONNX path loses 16% (target: lose none), missed.** One ONNX call "
    "already uses both cores for one text; two single-text calls running side by side "
    "keep the cores busier than one padded batch does. Batching is for the PyTorch path "
    "(1.57x) and for machines with more cores; `modelyard serve` has it off by default. "
    "Capping a chunk's padding at 1.5x (this run) raised in-process throughput on batches "
    "of 16 mixed texts from 49 to 84 texts/s (ONNX) and 52 to 78 (PyTorch), but did not "
    "close the gap in the server.",
    "- **int8** changes 0.3 points of accuracy here (0.842 against 0.845) at about half "
    "the latency; it passes the template's gate (`accuracy >= champion.accuracy - 0.005`) "
    "against either champion, which is where its use is decided.",
    "- **Training** ran on the CPU (no GPU machine was lent to this task): two epochs of "
    "4,000 reviews in 408 s. Versions 4 and 5 reuse version 3's weights, so their "
    "training time is 0 and their peak RSS is the process's (the fine-tune's).",
    "- The torch open-loop search stopped at 61/s on one failed request (p99 was 33.5 ms "
    "there), so its limit may be higher than the 49/s shown.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phases", nargs="+", choices=("train", "inproc", "server", "write"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-rows", type=int, default=None, help="fine-tune on fewer (smoke)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = load_results()
    if args.phases != ["write"]:
        results["machine"] = machine()
    for phase in args.phases:
        started = time.perf_counter()
        if phase == "train":
            results["train"] = train(args.epochs, args.max_rows)
        elif phase == "inproc":
            results["inproc"] = inproc()
        elif phase == "server":
            results["server"] = server()
        elif phase == "write":
            write_section(REPO / "bench" / "RESULTS.md", HEADER, report(results))
        save(results)
        say(f"{phase} took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
