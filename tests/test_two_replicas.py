"""Two replicas on two "hosts" are one service: SLOs, feedback and the canary see both.

Each host is a workspace folder of its own (its own .modelyard spool), with the same
modelyard.toml: metadata in PostgreSQL, artifacts and the prediction log on the S3
server. Two real ``modelyard serve`` processes answer; a third folder plays the
operator's machine.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sklearn.linear_model import Ridge

import modelyard
from cli_support import run_cli
from modelyard.monitoring._quality import joined
from modelyard.release import run_canary
from monitor_support import train_diabetes
from server_support import Traffic, running_server, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

POLL = ("--poll-interval", "0.2")


@pytest.fixture
def hosts(
    tmp_path: Path, pg_url: str, s3_bucket: str, s3_endpoint: str
) -> Iterator[SimpleNamespace]:
    bucket = s3_bucket.rsplit("/", 1)[0]
    # Hosts that share a registry share its keys (README, Security): one mounted secret.
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "signing").write_text(secrets.token_hex(32) + "\n")
    (keys / "pii").write_text(secrets.token_hex(32) + "\n")
    config = (
        f'[metadata]\nurl = "{pg_url}"\n'
        f'[artifacts]\nurl = "{bucket}/artifacts"\nendpoint_url = "{s3_endpoint}"\n'
        f'[predictions]\nurl = "{bucket}/predictions"\nmax_delay_s = 1.0\n'
        f'[security]\nsigning_key = "file:{keys / "signing"}"\npii_key = "file:{keys / "pii"}"\n'
    )
    roots = {}
    for name in ("a", "b", "operator"):
        root = tmp_path / name
        root.mkdir()
        (root / "modelyard.toml").write_text(config)
        roots[name] = root
    operator = modelyard.Workspace(roots["operator"])
    x = train_diabetes(operator)
    try:
        yield SimpleNamespace(roots=roots, ws=operator, rows=x.to_dict("records"))
    finally:
        operator.close()


def _predict(client: httpx.Client, url: str, body: dict[str, float]) -> str:
    r = client.post(f"{url}/v1/models/diabetes/predict", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["request_id"])


def test_slos_and_feedback_count_both_replicas(
    hosts: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, roots = hosts.rows, hosts.roots
    with (
        running_server(roots["a"], ["diabetes@production"]) as a,
        running_server(roots["b"], ["diabetes@production"]) as b,
        httpx.Client(timeout=10) as client,
    ):
        from_a = [_predict(client, a.url, rows[i]) for i in range(10)]
        from_b = [_predict(client, b.url, rows[i]) for i in range(15)]

        def slo_requests() -> float:
            code, out, err = run_cli(
                capsys, "monitor", "slo", "diabetes", "--json", "-w", str(roots["operator"])
            )
            assert code == 0, err
            return float(json.loads(out)["requests"])

        wait_until(lambda: slo_requests() == 25, timeout_s=20)  # each shipped within 1 s

        # Labels for B's answers go to A, and for A's to B: each finds the other's request.
        to_a = [{"request_id": rid, "label": 150.0} for rid in from_b[:3]]
        to_b = [{"request_id": rid, "label": 150.0} for rid in from_a[:2]]
        r_a = client.post(f"{a.url}/v1/feedback", json=to_a)
        r_b = client.post(f"{b.url}/v1/feedback", json=to_b)
        assert (r_a.status_code, r_b.status_code) == (200, 200), (r_a.text, r_b.text)
        assert r_a.json()["accepted"] == 3 and r_b.json()["accepted"] == 2
        typo = client.post(f"{a.url}/v1/feedback", json={"request_id": "nope", "label": 1.0})
        assert typo.status_code == 422 and "no prediction has request id 'nope'" in typo.text

    # The operator's machine joins every label to its prediction, wherever each landed.
    frame = joined(hosts.ws.predictions, "diabetes")
    assert sorted(frame["request_id"]) == sorted(from_b[:3] + from_a[:2])


def test_a_canary_is_judged_from_the_other_replicas_traffic(hosts: SimpleNamespace) -> None:
    ws, rows = hosts.ws, hosts.rows
    x_rows = [{k: float(v) for k, v in r.items()} for r in rows]
    with ws.start_run("candidate") as run:
        import pandas as pd

        frame = pd.DataFrame(x_rows)
        logged = ws.registry.log_model(
            run,
            Ridge(alpha=0.5).fit(frame, frame["bmi"]),
            input_example=frame.head(20),
            reference_data=frame,
        )
    ws.registry.set_alias("diabetes", "staging", ws.registry.register("diabetes", logged).version)
    # All traffic goes to replica B; the rollout runs on host A, which serves nothing.
    judge = modelyard.Workspace(hosts.roots["a"])
    with (
        running_server(hosts.roots["b"], ["diabetes@production"], *POLL) as b,
        Traffic(b, "diabetes", x_rows, threads=2),
    ):
        result = run_canary(judge, "diabetes", steps=(50, 100), interval_s=2, min_requests=5)
    judge.close()

    assert result.promoted, [(s.percent, s.values["requests"], s.breaches) for s in result.steps]
    assert all((s.values["requests"] or 0) >= 5 for s in result.steps)
    assert ws.registry.get("diabetes@production").version == 2
