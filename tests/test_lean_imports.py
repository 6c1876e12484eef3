"""What a fresh interpreter loads: ``import modelyard``, ``modelyard --help``, a served model.

Each check runs in a new ``python`` process, because this one has imported everything
already. A job worker, a command line call and a server start pay for every module they
load; these tests keep the heavy libraries out of the places that do not use them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from server_support import free_port

SRC = str(Path(modelyard.__file__).resolve().parents[1])
# What neither `import modelyard` nor `modelyard --help` may load.
HEAVY = {
    "duckdb",
    "pyarrow",
    "pandas",
    "numpy",
    "sqlalchemy",
    "scipy",
    "sklearn",
    "fastapi",
    "pydantic",
    "grpc",
}
# What serving a scikit-learn model may not load: the feature store's engine, the
# migration tool (the workspace's schema is current) and the proto compiler.
NOT_FOR_SERVING = {"duckdb", "alembic", "mako", "grpc_tools"}


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def loaded(code: str, *args: str) -> set[str]:
    """Top-level names of the modules ``code`` left loaded (it prints them as JSON last)."""
    proc = python(code, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


REPORT = "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))"
NEW = "print(json.dumps(sorted({m.partition('.')[0] for m in set(sys.modules) - startup})))"


def test_import_modelyard_loads_nothing_outside_the_standard_library() -> None:
    code = f"import json, sys\nstartup = set(sys.modules)\nimport modelyard\n{NEW}"

    outside = loaded(code) - set(sys.stdlib_module_names) - {"modelyard"}

    assert outside == set()


def test_public_names_still_resolve_on_first_use() -> None:
    code = (
        "import json, sys\nimport modelyard\n"
        "assert modelyard.Schema.__name__ == 'Schema' and modelyard.__version__\n"
        f"{REPORT}"
    )

    assert "pandas" in loaded(code)  # Schema's own module needs it, and now it is loaded


def test_help_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\nfrom modelyard.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        f"{REPORT}"
    )

    assert loaded(code) & HEAVY == set()


# Runs `modelyard serve` as the command line does (Typer, the prediction log, the feature
# store, gRPC on), with uvicorn.Server.run replaced by one request through httpx's ASGI transport.
# DuckDB and grpcio-tools are made unimportable, as in an install without them.
SERVE = """
import asyncio, json, sys, traceback
sys.modules["duckdb"] = None
sys.modules["grpc_tools"] = None
importer = {}

class WhoImports:
    def find_spec(self, name, path=None, target=None):
        if name == "scipy" and not importer:
            frames = [f.filename for f in traceback.extract_stack()]
            importer["scipy"] = next(
                f for f in reversed(frames) if not f.startswith(("<frozen", "<string"))
            )
        return None

sys.meta_path.insert(0, WhoImports())
import httpx, uvicorn

answers = []

def one_request(server, sockets=None):
    # Stands in for uvicorn.Server.run: one request through the app, in process.
    app = server.config.app.inner  # the FastAPI app behind the prediction routes' fast path
    server.started = True

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post("/v1/models/cancer/predict", json=json.loads(sys.argv[2]))
                answers.append([r.status_code, r.json()])
    asyncio.run(go())

uvicorn.Server.run = one_request
from modelyard.cli import main
port, grpc_port = sys.argv[3:5]
try:
    main(["serve", "cancer@production", "-w", sys.argv[1], "--port", port,
          "--grpc-port", grpc_port, "--poll-interval", "0"])
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(answers))
print(json.dumps(importer))
print(json.dumps(sorted({m.partition(".")[0] for m, v in sys.modules.items() if v})))
"""


@pytest.fixture
def registered(sqlite_workspace: modelyard.Workspace) -> tuple[Path, dict[str, Any]]:
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    assert isinstance(x, pd.DataFrame)
    ws = sqlite_workspace
    with ws.start_run("train") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        logged = ws.registry.log_model(run, model, input_example=x.head(5))
    ws.registry.set_alias("cancer", "production", ws.registry.register("cancer", logged).version)
    ws.close()
    return ws.root, {k: float(v) for k, v in x.iloc[0].items()}


def test_a_served_sklearn_model_loads_no_feature_store_migrations_or_proto_compiler(
    registered: tuple[Path, dict[str, Any]],
) -> None:
    folder, record = registered

    proc = python(SERVE, str(folder), json.dumps(record), str(free_port()), str(free_port()))

    assert proc.returncode == 0, proc.stderr[-3000:]
    answers, importer, names = (json.loads(line) for line in proc.stdout.splitlines()[-3:])
    modules = set(names)
    assert [status for status, _ in answers] == [200]
    assert answers[0][1]["model"] == "cancer"
    assert modules & NOT_FOR_SERVING == set()
    assert "grpc" in modules  # the gRPC service did start, from the committed descriptors
    # scikit-learn needs SciPy to unpickle the model; modelyard's own code never imports it.
    assert "/sklearn/" in importer["scipy"], importer


def test_features_commands_without_duckdb_say_which_extra_to_install(
    sqlite_workspace: modelyard.Workspace,
) -> None:
    code = (
        "import sys\nsys.modules['duckdb'] = None\n"
        "from modelyard.cli import main\nmain(['features', 'list', '-w', sys.argv[1]])"
    )

    proc = python(code, str(sqlite_workspace.root))

    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: the feature store needs DuckDB, which is not installed; "
        "pip install 'modelyard[features]'"
    ]


def test_feature_definitions_without_duckdb_name_the_extra() -> None:
    code = (
        "import sys\nsys.modules['duckdb'] = None\nimport modelyard.features\n"
        "try:\n    modelyard.features.FeatureView\n"
        "except modelyard.ModelyardError as exc:\n    print(exc)"
    )

    proc = python(code)

    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == (
        "modelyard.features.FeatureView needs the package 'duckdb', which is not installed; "
        "pip install 'modelyard[features]'"
    )
