"""The servers bench/serving.py measures ("sides"), the model they share and the request bodies.

Every side serves the same LogisticRegression: modelyard from its registry, the bare app
(``_bare_app.py``), BentoML and MLflow from one pickle of it. A side is a command line, a
readiness path and the endpoints to measure; each endpoint has a body shape ("kind").
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO
from _procs import Unavailable, post

BENCH = Path(__file__).resolve().parent
BENTOML_VENV = BENCH / ".venv-bentoml"
MLFLOW_VENV = BENCH / ".venv-mlflow"
FRIENDLY = "/v1/models/lr/predict"
OIP = "/v2/models/lr/infer"
NAMES = [f"f{i}" for i in range(20)]
QUIET = {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
GROUPS = ("bare", "modelyard", "bentoml", "mlflow")
UNBATCHED = ("--max-batch-size", "1")
BATCHED = ("--max-batch-size", "64", "--max-latency-ms", "2")


@dataclass(frozen=True)
class Endpoint:
    key: str  # "friendly" or "oip" for modelyard and the bare app, the peer's name otherwise
    path: str
    kind: str  # the body shape, see bodies()


@dataclass
class Side:
    name: str
    group: str
    label: str
    workers: int
    endpoints: list[Endpoint]
    flags: tuple[str, ...] = ()
    cmd: list[str] = field(default_factory=list)
    health: str = "/readyz"
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)


def build(folder: Path) -> dict[str, Any]:
    """Workspace with lr versions 1 and 2 (alias production -> 1), the pickle, request rows."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelyard.workspace import Workspace

    x, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    frame = pd.DataFrame(x, columns=NAMES)
    ws = Workspace.init(folder / "ws")
    models = [LogisticRegression(max_iter=500), LogisticRegression(C=0.05, max_iter=500)]
    for model in models:
        with ws.start_run("bench-serving", params={"C": model.C}) as run:
            model.fit(frame, y)
            logged = ws.registry.log_model(run, model, input_example=frame.head(20))
        ws.registry.register("lr", logged)
    ws.registry.set_alias("lr", "production", 1)
    ws.close()
    pkl = folder / "lr.pkl"
    pkl.write_bytes(pickle.dumps(models[0]))
    return {
        "workspace": folder / "ws",
        "pickle": pkl,
        "rows": x[:500],
        "expected": [float(p) for p in models[0].predict_proba(frame.head(1))[0]],
    }


def bodies(kind: str, rows: Any) -> list[bytes]:
    """One request body per row, in the shape each server's documented API takes."""
    out = []
    for row in rows:
        values = [float(v) for v in row]
        record = dict(zip(NAMES, values, strict=True))
        payload: Any = {
            "friendly": record,
            "oip": {
                "inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP64", "data": values}]
            },
            "bentoml": {"rows": [values]},
            "mlflow": {"dataframe_records": [record]},
        }[kind]
        out.append(json.dumps(payload, separators=(",", ":")).encode())
    return out


def probabilities(kind: str, answer: Any) -> list[float] | None:
    """The class probabilities in an answer, or None where the shape is not known."""
    if kind == "friendly":
        pred = answer.get("prediction", {})
        return [pred.get("probability_0"), pred.get("probability_1")]
    if kind == "bentoml":
        return list(answer[0])
    if kind == "mlflow":
        return list(answer["predictions"][0])
    if kind == "oip":
        outs = {o.get("name"): o.get("data") for o in answer.get("outputs", [])}
        if "probability_0" in outs and "probability_1" in outs:
            return [outs["probability_0"][0], outs["probability_1"][0]]
    return None


def check_answer(port: int, ep: Endpoint, body: bytes, expected: list[float]) -> str:
    """'same' when the server answers the expected probabilities; raise when it fails."""
    status, raw = post(port, ep.path, body)
    if status != 200:
        raise Unavailable(
            f"POST {ep.path} answered HTTP {status}: {raw[:160].decode(errors='replace')}"
        )
    got = probabilities(ep.kind, json.loads(raw))
    if got is None:
        return "answer shape not checked"
    diff = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    return "same" if diff < 1e-9 else f"differs by {diff:.3g}"


# -- the sides -------------------------------------------------------------------------------
def _my(name: str, label: str, workers: int, flags: tuple[str, ...], oip: bool = True) -> Side:
    eps = [Endpoint("friendly", FRIENDLY, "friendly")]
    eps += [Endpoint("oip", OIP, "oip")] if oip else []
    if workers > 1:
        flags = (*flags, "--workers", str(workers))
    return Side(name, "modelyard", label, workers, eps, flags)


def _bare(name: str, workers: int, oip: bool) -> Side:
    eps = [Endpoint("friendly", "/predict", "friendly")]
    eps += [Endpoint("oip", OIP, "oip")] if oip else []
    label = f"bare app, {workers} process{'es' if workers > 1 else ''}"
    return Side(name, "bare", label, workers, eps, ("--workers", str(workers)), health="/healthz")


def all_sides() -> list[Side]:
    """Every side, in the order of the first round (later rounds rotate it)."""
    batched, unbatched = "--max-batch-size 64 --max-latency-ms 2", "--max-batch-size 1"
    bento = Endpoint("bentoml", "/predict", "bentoml")
    mlflow = Endpoint("mlflow", "/invocations", "mlflow")
    return [
        _bare("bare", 1, oip=True),
        _my("modelyard-default", "modelyard, defaults", 1, ()),
        _my("modelyard-unbatched", f"modelyard, {unbatched}", 1, UNBATCHED),
        _my("modelyard-batched", f"modelyard, {batched}", 1, BATCHED),
        _bare("bare-w2", 2, oip=False),
        _my("modelyard-unbatched-w2", f"modelyard, {unbatched} --workers 2", 2, UNBATCHED, False),
        _my("modelyard-batched-w2", f"modelyard, {batched} --workers 2", 2, BATCHED, False),
        Side("bentoml", "bentoml", "BentoML, workers=1, batchable 64", 1, [bento]),
        Side("bentoml-w2", "bentoml", "BentoML, workers=2, batchable 64", 2, [bento]),
        Side("mlflow", "mlflow", "MLflow, -w 1", 1, [mlflow]),
        Side("mlflow-w2", "mlflow", "MLflow, -w 2", 2, [mlflow]),
    ]


def prepare(side: Side, port: int, built: dict[str, Any], tmp: Path) -> None:
    """Fill in the command line, working folder and environment of ``side`` for ``port``."""
    if side.group == "bare":
        side.cmd = [sys.executable, str(BENCH / "_bare_app.py"), "--model", str(built["pickle"])]
        side.cmd += ["--port", str(port), *side.flags]
        side.cwd = BENCH
        side.env = dict(os.environ)
    elif side.group == "modelyard":
        exe = Path(sys.executable).with_name("modelyard")
        side.cmd = [str(exe), "serve", "lr@production", "--port", str(port)]
        side.cmd += ["-w", str(built["workspace"]), *side.flags]
        # The defaults are what is measured: no MODELYARD_* setting of the caller's applies.
        side.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    elif side.group == "bentoml":
        side.env = {
            **os.environ,
            **QUIET,
            "BENTOML_HOME": str(tmp / "bentoml-home"),
            "BENCH_MODEL_PATH": str(built["pickle"]),
            "BENCH_WORKERS": str(side.workers),
            "BENCH_MAX_BATCH_SIZE": "64",
            "BENCH_MAX_LATENCY_MS": "60000",
        }
        side.cmd = [str(BENTOML_VENV / "bin" / "bentoml"), "serve"]
        side.cmd += ["_bentoml_service:LogisticRegression", "--host", "127.0.0.1"]
        side.cmd += ["--port", str(port)]
        side.health, side.cwd = "/readyz", BENCH
    else:
        # mlflow models serve starts `uvicorn` from PATH: the venv's bin, as if activated.
        path = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        side.env = {**os.environ, **QUIET, "PATH": path}
        side.cmd = [str(MLFLOW_VENV / "bin" / "mlflow"), "models", "serve"]
        side.cmd += ["-m", str(built["mlflow_model"]), "--env-manager", "local"]
        side.cmd += ["-w", str(side.workers), "-h", "127.0.0.1", "-p", str(port)]
        side.health = "/ping"


def peer_versions(group: str) -> dict[str, str]:
    """The peer's and its venv's scikit-learn version; Unavailable when its venv is missing."""
    venv = BENTOML_VENV if group == "bentoml" else MLFLOW_VENV
    code = f"import {group}, sklearn; print({group}.__version__, sklearn.__version__)"
    python = venv / "bin" / "python"
    if not python.exists():
        raise Unavailable(f"{venv.name} is missing: run 'bash bench/setup_{group}.sh'")
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise Unavailable(f"{venv.name} is missing or broken: run 'bash bench/setup_{group}.sh'")
    version, sklearn = res.stdout.split()
    return {group: version, f"scikit_learn_{group}_venv": sklearn}


def save_mlflow_model(built: dict[str, Any], tmp: Path) -> None:
    built["mlflow_model"] = tmp / "mlflow-model"
    saved = subprocess.run(
        [
            str(MLFLOW_VENV / "bin" / "python"),
            str(BENCH / "_mlflow_serving_model.py"),
            str(built["pickle"]),
            str(built["mlflow_model"]),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET},
    )
    if saved.returncode != 0:
        raise Unavailable(f"saving the MLflow model failed: {saved.stderr.strip()[-800:]}")


def serve_help() -> str:
    exe = Path(sys.executable).with_name("modelyard")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    res = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, env=env)
    return res.stdout + res.stderr
