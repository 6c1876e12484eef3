"""The floor for bench/serving.py: the least a hand-written server does to answer the same request.

Issue 22 measures modelyard against this app rather than only against BentoML and MLflow,
because a peer framework is a weak baseline: what a request path costs shows against an app
that does nothing but the job. It is written by hand, with no framework, so that nothing
but the job is in it:

- one pure ASGI callable, run by the same uvicorn as ``modelyard serve`` (uvloop, httptools,
  access log off, no ``server`` header), on a socket of its own with SO_REUSEPORT per process
  as modelyard's ``--workers N`` does;
- ``POST /predict``: the body parsed with orjson (one record ``{"f0": .., "f19": ..}`` or a
  list of them, the body modelyard's ``/v1/models/lr/predict`` takes), a NumPy row in the
  signature's column order, ``predict_proba`` called inline on the event loop, the label by
  argmax, and the answer written with orjson in modelyard's keys (``prediction`` or
  ``predictions``; ``prediction`` and ``probability_<class>`` in each);
- ``POST /v2/models/lr/infer``: the Open Inference Protocol body (one FP64 tensor of shape
  [n, 20]) answered with one output tensor per column, as modelyard's OIP route answers;
- ``GET /healthz`` for the benchmark's readiness wait.

No validation, metrics, logging or request ids: a malformed body is a 500 from uvicorn.
The model is the very pickle bench/serving.py gives the other servers; its stored feature
names are dropped at load, as modelyard's sklearn flavor does for its array path, because
scikit-learn would otherwise warn about plain arrays on every call. The heap is frozen after
loading (``gc.freeze``), as ``modelyard serve`` does, so that a full collection does not
walk scikit-learn on the request path of one side only.

    python bench/_bare_app.py --model lr.pkl --port 8100 [--workers 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

Scope = dict[str, Any]
NAMES = [f"f{i}" for i in range(20)]
JSON = [(b"content-type", b"application/json")]


def load(path: Path) -> Any:
    model = pickle.loads(path.read_bytes())
    if "feature_names_in_" in vars(model):
        delattr(model, "feature_names_in_")
    return model


def make_app(model: Any, names: list[str] = NAMES) -> Any:
    classes = [c.item() if isinstance(c, np.generic) else c for c in model.classes_]
    labels = np.asarray(classes, dtype=object)
    keys = [f"probability_{c}" for c in classes]

    def records(proba: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for label, row in zip(labels[proba.argmax(axis=1)], proba.tolist(), strict=True):
            record = {"prediction": label}
            record.update(zip(keys, row, strict=True))
            out.append(record)
        return out

    def predict(body: bytes) -> bytes:
        data = orjson.loads(body)
        rows = data if isinstance(data, list) else [data]
        x = np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
        answer = records(model.predict_proba(x))
        if isinstance(data, list):
            return orjson.dumps({"predictions": answer})
        return orjson.dumps({"prediction": answer[0]})

    def infer(body: bytes) -> bytes:
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        proba = model.predict_proba(x)
        outputs = [
            {
                "name": "prediction",
                "datatype": "INT64",
                "shape": [len(x)],
                "data": labels[proba.argmax(axis=1)].tolist(),
            }
        ]
        for i, key in enumerate(keys):
            col = proba[:, i].tolist()
            outputs.append({"name": key, "datatype": "FP64", "shape": [len(x)], "data": col})
        return orjson.dumps({"model_name": "lr", "outputs": outputs})

    routes = {"/predict": predict, "/v2/models/lr/infer": infer}

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        handler = routes.get(scope["path"]) if scope["method"] == "POST" else None
        if handler is None:
            ok = scope["method"] == "GET" and scope["path"] == "/healthz"
            status = 200 if ok else 404
            empty = [(b"content-length", b"0")]
            await send({"type": "http.response.start", "status": status, "headers": empty})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = handler(body)
        headers = [*JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve(model_path: Path, host: str, port: int) -> None:
    import uvicorn

    app = make_app(load(model_path))
    sock = listen(host, port)
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        server_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])


def supervise(args: argparse.Namespace) -> None:
    """Start ``--workers`` copies of this script, each on its own SO_REUSEPORT socket."""
    cmd = [sys.executable, __file__, "--model", str(args.model), "--host", args.host]
    cmd += ["--port", str(args.port), "--workers", "1"]
    children = [subprocess.Popen(cmd) for _ in range(args.workers)]

    def stop(*_: Any) -> None:
        for child in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [child.wait() for child in children]
    sys.exit(max(codes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="pickled scikit-learn model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers > 1:
        supervise(args)
    else:
        serve(args.model, args.host, args.port)


if __name__ == "__main__":
    main()
