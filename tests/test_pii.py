"""Personal data tagged ``pii`` is unreadable in everything modelyard writes: the served
prediction log, batch-scoring logs, the model's reference profile, reports and error
messages. Hashes are HMAC-SHA256 under the workspace's own key (not a public salt), so
a dictionary of e-mail addresses does not reverse them; ``pii="drop"`` keeps nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import anyio
import httpx
import pandas as pd
import pytest

import modelyard
from cli_support import run_cli
from modelyard.contracts import Field, Schema
from modelyard.registry import Signature
from modelyard.serving import create_app

EMAILS = ["ann@example.com", "bob@example.com", "cyd@example.com"]
SSNS = ["078-05-1120", "219-09-9999", "457-55-5462"]

SIGNATURE = Signature(
    inputs=Schema.of(
        Field(name="email", dtype="string", pii=True, max_length=40),
        Field(name="ssn", dtype="string", pii="drop"),
        Field(name="amount", dtype="float64"),
    ),
    outputs=Schema.of(Field(name="prediction", dtype="float64")),
)


def score(frame: pd.DataFrame) -> Any:
    return {"prediction": frame["amount"] * 2}


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    ws = modelyard.Workspace.init(tmp_path / "ws", environ={})
    frame = pd.DataFrame({"email": EMAILS, "ssn": SSNS, "amount": [1.0, 2.0, 3.0]})
    with ws.start_run("fn") as run:
        logged = ws.registry.log_model(
            run, score, signature=SIGNATURE, input_example=frame, reference_data=frame
        )
    ws.registry.set_alias("pay", "production", ws.registry.register("pay", logged).version)
    try:
        yield ws
    finally:
        ws.close()


def _serve(ws: Any, bodies: list[Any]) -> list[httpx.Response]:
    app = create_app(
        ws.registry, ["pay@production"], prediction_log=ws.predictions, poll_interval_s=0
    )

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return [await c.post("/v1/models/pay/predict", json=b) for b in bodies]

    return anyio.run(go)


def test_pii_is_hashed_with_the_workspace_key_or_dropped_everywhere_it_is_written(
    ws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"email": e, "ssn": s, "amount": float(i)}
        for i, (e, s) in enumerate(zip(EMAILS, SSNS, strict=True))
    ]
    answers = _serve(
        ws,
        [
            *rows,
            {"email": "x" * 41 + "@example.com", "ssn": SSNS[0], "amount": 1.0},  # too long
            {"email": EMAILS[0], "ssn": SSNS[0], "amount": "lots"},  # a bad amount
        ],
    )
    assert [r.status_code for r in answers] == [200, 200, 200, 422, 422]
    source = tmp_path / "in.parquet"
    pd.DataFrame(rows).to_parquet(source)
    code, _, err = run_cli(
        capsys, "score", "pay@production", "-i", str(source), "-o", str(tmp_path / "o.parquet"),
        "-w", str(ws.root),
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        capsys, "monitor", "report", "pay", "-o", str(tmp_path / "report.html"), "-w", str(ws.root)
    )
    logged = ws.predictions.read("pay").to_pandas()
    assert len(logged) == 6 and "input.ssn" not in logged.columns
    key = ws.secret_key("pii")
    want = {"h:" + hmac.new(key, e.encode(), hashlib.sha256).hexdigest() for e in EMAILS}
    assert set(logged["input.email"]) == want
    # The old scheme (blake2b keyed with the public "modelyard", 64 bits) reverses by lookup.
    public = {
        "h:" + hashlib.blake2b(e.encode(), key=b"modelyard", digest_size=8).hexdigest()
        for e in EMAILS
    }
    assert not public & set(logged["input.email"])
    profile = ws.registry.reference_profile("pay@production")
    assert profile is not None and "email" not in profile.columns and "amount" in profile.columns
    written = [p for p in [*Path(ws.root).rglob("*"), *tmp_path.glob("report*")] if p.is_file()]
    leaked = {
        str(p.relative_to(tmp_path))
        for p in written
        if p.name != "in.parquet"
        and p.name != "o.parquet"  # the user's own input and the output they asked for
        and any(v.encode() in p.read_bytes() for v in [*EMAILS, *SSNS, "x" * 41])
    }
    assert leaked == set()
    for r in answers[3:]:
        assert not any(v in r.text for v in [*EMAILS, *SSNS, "x" * 41]), r.text


def test_a_batch_error_does_not_repeat_a_pii_value(ws: Any) -> None:
    from modelyard.contracts import validate_frame

    schema = Schema.of(Field(name="email", dtype="string", pii=True, categories=("a", "b")))
    with pytest.raises(modelyard.errors.SchemaValidationError) as caught:
        validate_frame(schema, pd.DataFrame({"email": [EMAILS[0]]}))
    assert EMAILS[0] not in str(caught.value.to_dict()) and "a value" in str(caught.value.to_dict())
