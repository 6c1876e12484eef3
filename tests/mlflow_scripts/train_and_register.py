"""An unchanged MLflow training script: the fluent API, MlflowClient, sklearn autolog,
registration with an alias, artifact download and pyfunc loading. The test runs it with
MLFLOW_TRACKING_URI pointing at `modelyard server` and prints what it saw as JSON."""

import json
import os
import tempfile

import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment("breast-cancer")
with mlflow.start_run(run_name="manual") as manual:
    mlflow.log_param("lr", 0.1)
    mlflow.log_params({"depth": 3, "kind": "logistic"})
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"auc": 0.91, "acc": 0.88})
    mlflow.set_tag("team", "risk")
    with tempfile.TemporaryDirectory() as folder:
        notes = os.path.join(folder, "notes.txt")
        with open(notes, "w") as fh:
            fh.write("trained on the first 200 rows")
        mlflow.log_artifact(notes)
    mlflow.log_dict({"C": 1.0}, "config/params.json")

mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=True)
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
with mlflow.start_run(run_name="autolog") as auto:
    LogisticRegression(max_iter=50).fit(X[:200], y[:200])
mlflow.sklearn.autolog(disable=True)

client = MlflowClient()
version = mlflow.register_model(f"runs:/{auto.info.run_id}/model", "cancer")
client.set_registered_model_alias("cancer", "champion", version.version)
client.set_model_version_tag("cancer", version.version, "reviewed", "yes")
found = client.search_runs(
    [manual.info.experiment_id],
    "metrics.loss < 0.5 and params.kind = 'logistic' and attributes.run_name LIKE 'man%'",
    order_by=["metrics.auc DESC"],
)
history = client.get_metric_history(manual.info.run_id, "loss")
with tempfile.TemporaryDirectory() as out:
    notes = open(client.download_artifacts(manual.info.run_id, "notes.txt", out)).read()
model = mlflow.pyfunc.load_model("models:/cancer@champion")
print(
    json.dumps(
        {
            "manual": manual.info.run_id,
            "auto": auto.info.run_id,
            "experiment": manual.info.experiment_id,
            "version": version.version,
            "found": [r.info.run_id for r in found],
            "history": [(m.step, m.value) for m in history],
            "notes": notes,
            "artifacts": sorted(f.path for f in client.list_artifacts(manual.info.run_id)),
            "by_alias": client.get_model_version_by_alias("cancer", "champion").version,
            "predictions": [int(p) for p in model.predict(X[:5])],
            "auto_metrics": sorted(client.get_run(auto.info.run_id).data.metrics),
        }
    )
)
