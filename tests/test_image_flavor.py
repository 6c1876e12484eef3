"""The ``image`` flavor: images in (base64 PNG/JPEG, multipart files, pixel arrays), labels
out, every bad image a 422 naming its row; served with dynamic batching."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("PIL")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

import modelyard  # noqa: E402
from modelyard.contracts import Field, Schema  # noqa: E402
from modelyard.errors import SchemaValidationError  # noqa: E402
from modelyard.registry import Signature  # noqa: E402
from modelyard.registry.flavors.image import (  # noqa: E402
    ImageClassifier,
    ImageSpec,
    normalise,
)
from modelyard.serving import ServeOptions, create_app  # noqa: E402

CLASSES = ["dark", "light"]
SPEC = ImageSpec(height=8, width=8, channels=1, mean=(0.5,), std=(0.5,))


class Brightness(torch.nn.Module):
    """Says 'light' for a bright picture: a model whose answer a test can predict."""

    def forward(self, x: Any) -> Any:
        mean = x.mean(dim=(1, 2, 3))
        return torch.stack([-mean * 10, mean * 10], dim=1)


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    image = Image.fromarray(pixels.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signature() -> Signature:
    return Signature(
        inputs=Schema.of(
            # Longer than the test server's string limit (200): the field's own limit holds.
            Field(name="image", dtype="string", min_length=1, max_length=100_000),
            Field(name="client_id", dtype="string", nullable=True),
        ),
        outputs=Schema.of(
            Field(name="prediction", dtype="string", categories=tuple(CLASSES)),
            Field(name="probability", dtype="float64"),
            *(Field(name=f"probability_{c}", dtype="float64") for c in CLASSES),
        ),
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> modelyard.Workspace:
    ws = modelyard.Workspace.init(tmp_path_factory.mktemp("image-flavor"))
    example = pd.DataFrame(
        {"image": [b64(png(np.full((8, 8), 200)))], "client_id": pd.Series([None], dtype=object)}
    )
    with ws.start_run("brightness") as run:
        logged = ws.registry.log_model(
            run,
            ImageClassifier(Brightness(), CLASSES, SPEC),
            signature=signature(),
            input_example=example,
        )
    version = ws.registry.register("bright", logged)
    ws.registry.set_alias("bright", "production", version.version)
    return ws


def test_the_flavor_is_chosen_for_an_image_classifier_and_loads_without_the_class(
    ws: modelyard.Workspace,
) -> None:
    version = ws.registry.get("bright@production")
    assert version.flavor == "image"
    model = ws.registry.load("bright@production")
    dark, light = png(np.full((8, 8), 10)), png(np.full((8, 8), 240))
    out = model.predict(pd.DataFrame({"image": [b64(dark), b64(light)], "client_id": [None, None]}))
    assert list(out["prediction"]) == ["dark", "light"]
    row = out.iloc[1]
    assert row["probability"] == pytest.approx(row["probability_light"])
    assert row["probability_dark"] + row["probability_light"] == pytest.approx(1.0)


def test_training_and_serving_normalise_pixels_the_same_way() -> None:
    pixels = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    spec = ImageSpec(height=2, width=2, channels=1, mean=(0.2,), std=(0.4,))
    expected = (pixels.float() / 255 - 0.2) / 0.4
    assert torch.allclose(normalise(pixels, spec), expected, atol=1e-6)


def test_other_sizes_and_colours_are_resized_and_converted(ws: modelyard.Workspace) -> None:
    model = ws.registry.load("bright@production")
    rgb = np.zeros((40, 30, 3))
    rgb[..., 0] = 250  # bright red: light once grey
    rgb[..., 1] = 250
    jpeg = png(rgb, "JPEG")
    out = model.predict(pd.DataFrame({"image": [b64(jpeg)], "client_id": [None]}))
    assert out["prediction"][0] == "light"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a" + b"\x00" * 40, "GIF image"),
        (b"hello, not an image at all", "not a PNG or JPEG"),
        (png(np.random.default_rng(0).integers(0, 255, (64, 64)))[:2000], "damaged PNG"),
        (png(np.zeros((5000, 4))), "largest side accepted is 4096"),
    ],
)
def test_a_bad_image_is_a_422_naming_its_row_and_the_remedy(
    ws: modelyard.Workspace, data: bytes, message: str
) -> None:
    model = ws.registry.load("bright@production")
    good = b64(png(np.full((8, 8), 9)))
    with pytest.raises(SchemaValidationError) as caught:
        model.predict(pd.DataFrame({"image": [good, b64(data)], "client_id": [None, None]}))
    (error,) = caught.value.errors
    assert error["row"] == 1 and error["field"] == "image"
    assert message in error["message"]


def test_text_that_is_not_base64_is_refused() -> None:
    from modelyard.registry.flavors._image_decode import encoded_bytes

    with pytest.raises(SchemaValidationError, match="not base64"):
        encoded_bytes("not*base64*at*all", 0, "image", SPEC)


def test_pixel_arrays_must_match_the_model_exactly() -> None:
    from modelyard.registry.flavors._image_decode import pixels_of

    assert pixels_of(np.full((8, 8), 3, np.uint8), 0, "image", SPEC).shape == (1, 8, 8)
    assert pixels_of(np.full((1, 8, 8), 1.0, np.float32), 0, "image", SPEC).max() == 255
    for bad, message in [
        (np.zeros((3, 8, 8), np.uint8), "has shape 3x8x8"),
        (np.full((8, 8), 2.0, np.float32), "0..1"),
        (np.full((8, 8), 300, np.int32), "0..255"),
    ]:
        with pytest.raises(SchemaValidationError, match=message):
            pixels_of(bad, 0, "image", SPEC)


def test_a_spec_that_does_not_resize_refuses_other_sizes() -> None:
    from modelyard.registry.flavors._image_decode import decode

    strict = ImageSpec(height=8, width=8, resize=False)
    with pytest.raises(SchemaValidationError, match="is 9x8 pixels; this model takes 8x8"):
        decode(png(np.zeros((8, 9))), 0, "image", strict)


def _serve(
    ws: modelyard.Workspace, calls: list[dict[str, Any]], max_batch_size: int = 16
) -> tuple[list[httpx.Response], str]:
    options = ServeOptions(
        ref="bright@production", max_batch_size=max_batch_size, max_latency_ms=20
    )
    app = create_app(
        ws.registry,
        [options],
        prediction_log=ws.predictions,
        poll_interval_s=0,
        max_string_length=200,
    )

    async def go() -> tuple[list[httpx.Response], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                url = "/v1/models/bright/predict"
                replies = await _gather(c, url, calls)
                metrics = (await c.get("/metrics")).text
        return replies, metrics

    return anyio.run(go)


async def _gather(
    c: httpx.AsyncClient, url: str, calls: list[dict[str, Any]]
) -> list[httpx.Response]:
    import asyncio

    return list(await asyncio.gather(*(c.post(url, **call) for call in calls)))


def test_the_server_takes_base64_json_and_multipart_uploads(ws: modelyard.Workspace) -> None:
    light = png(np.full((8, 8), 240))
    dark = png(np.full((8, 8), 5))
    replies, _ = _serve(
        ws,
        [
            {"json": {"image": b64(light), "client_id": "ann"}},
            {"files": {"image": ("light.png", light, "image/png")}, "data": {"client_id": "bob"}},
            {
                "files": [
                    ("image", ("a.png", dark, "image/png")),
                    ("image", ("b.png", light, "image/png")),
                ]
            },
        ],
    )
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert replies[0].json()["prediction"]["prediction"] == "light"
    assert replies[1].json()["prediction"]["prediction"] == "light"
    assert [p["prediction"] for p in replies[2].json()["predictions"]] == ["dark", "light"]


def test_bad_uploads_get_one_line_422s_and_leave_the_others_answered(
    ws: modelyard.Workspace,
) -> None:
    good = {"json": {"image": b64(png(np.full((8, 8), 240)))}}
    replies, metrics = _serve(
        ws,
        [
            good,
            {"json": {"image": b64(b"GIF89a" + b"\x00" * 30)}},
            good,
            {"files": {"picture": ("x.png", b"123", "image/png")}},
            {"json": {"image": "%%%"}},
            good,
        ],
    )
    assert [r.status_code for r in replies] == [200, 422, 200, 422, 422, 200]
    gif, unknown, not_b64 = (replies[i].json() for i in (1, 3, 4))
    assert gif["code"] == "validation_failed" and "GIF" in gif["message"]
    assert "request_id" in gif
    assert "unknown field" in unknown["message"]
    assert "not base64" in not_b64["message"]


def test_concurrent_requests_are_batched(ws: modelyard.Workspace) -> None:
    body = {"json": {"image": b64(png(np.full((8, 8), 240)))}}
    replies, metrics = _serve(ws, [body] * 48)
    assert all(r.status_code == 200 for r in replies)
    counts = [
        line
        for line in metrics.splitlines()
        if line.startswith("modelyard_batch_size_rows_count") and 'model="bright"' in line
    ]
    batches = float(counts[0].rsplit(" ", 1)[1])
    assert 0 < batches < 48  # some requests rode in one batch


def test_the_container_builder_knows_the_image_flavors_packages() -> None:
    from modelyard.release._wheelhouse import FLAVOR_MODULES

    assert {"torch", "PIL"} <= set(FLAVOR_MODULES["image"])


def test_multipart_form_fields_take_the_fields_type() -> None:
    from modelyard.serving._multipart import records_of

    schema = Schema.of(Field(name="image", dtype="string"), Field(name="n", dtype="int64"))
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="n"\r\n\r\n7\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        f"Content-Type: image/png\r\n\r\nabc\r\n--{boundary}--\r\n"
    ).encode()
    records = records_of(body, f"multipart/form-data; boundary={boundary}", schema)
    assert records == [{"n": 7, "image": b64(b"abc")}]
    with pytest.raises(SchemaValidationError, match="not a int64"):
        records_of(
            body.replace(b"\r\n7\r\n", b"\r\nseven\r\n"),
            f"multipart/form-data; boundary={boundary}",
            schema,
        )


def _oip(ws: modelyard.Workspace, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    app = create_app(ws.registry, ["bright@production"], poll_interval_s=0)

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return [await c.post("/v2/models/bright/infer", json=b) for b in bodies]

    return anyio.run(go)


def test_pixels_come_as_open_inference_protocol_tensors(ws: modelyard.Workspace) -> None:
    grey = np.stack([np.full((8, 8), 3), np.full((8, 8), 250)]).astype(np.uint8)
    floats = np.full((1, 1, 8, 8), 0.9, dtype=np.float32)
    replies = _oip(
        ws,
        [
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "UINT8",
                        "shape": [2, 8, 8],
                        "data": grey.ravel().tolist(),
                    }
                ]
            },
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "FP32",
                        "shape": [1, 1, 8, 8],
                        "data": floats.ravel().tolist(),
                    }
                ]
            },
            {
                "inputs": [
                    {"name": "image", "datatype": "UINT8", "shape": [1, 3, 8, 8], "data": [0] * 192}
                ]
            },
            {
                "inputs": [
                    {"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "data": [2.0] * 64}
                ]
            },
        ],
    )
    assert [r.status_code for r in replies] == [200, 200, 422, 422]
    outputs = {o["name"]: o["data"] for o in replies[0].json()["outputs"]}
    assert outputs["prediction"] == ["dark", "light"]
    assert {o["name"]: o["data"] for o in replies[1].json()["outputs"]}["prediction"] == ["light"]
    assert "has shape 3x8x8; this model takes 1x8x8" in replies[2].json()["message"]
    assert "0..1" in replies[3].json()["message"]
    # The same picture as a tensor and as a PNG gets the same probabilities.
    model = ws.registry.load("bright@production")
    frame = pd.DataFrame({"image": [b64(png(grey[1]))], "client_id": [None]})
    assert outputs["probability_light"][1] == pytest.approx(
        model.predict(frame)["probability_light"][0]
    )


def test_raw_image_bodies_data_urls_and_large_files_are_taken(ws: modelyard.Workspace) -> None:
    noisy = png(np.random.default_rng(1).integers(0, 255, (64, 64)))  # ~4 KB: over 200 chars
    light = png(np.full((8, 8), 240))
    unpadded = b64(light).rstrip("=")
    replies, _ = _serve(
        ws,
        [
            {"content": light, "headers": {"content-type": "image/png"}},
            {"json": {"image": "data:image/png;base64," + b64(light)}},
            {"json": {"image": unpadded}},
            {"json": {"image": b64(noisy)}},
            {"files": {"image": ("n.png", noisy, "image/png")}},
            {"files": {"image": ("a.png", light, "image/png")}, "data": {"client_id": ["a", "b"]}},
            {"json": {"image": 5}},
        ],
    )
    assert [r.status_code for r in replies] == [200, 200, 200, 200, 200, 422, 422]
    assert replies[0].json()["prediction"]["prediction"] == "light"
    assert "sent twice" in replies[5].json()["message"]
    assert "got a number (5); send a string value" in replies[6].json()["message"]


def test_an_image_body_to_a_model_without_images_is_a_415(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    ws = modelyard.Workspace.init(tmp_path / "plain")
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0]})
    with ws.start_run("plain") as run:
        logged = ws.registry.log_model(run, LinearRegression().fit(x, [0, 1, 2]), input_example=x)
    ws.registry.set_alias("plain", "production", ws.registry.register("plain", logged).version)
    app = create_app(ws.registry, ["plain@production"], poll_interval_s=0)

    async def go() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.post(
                    "/v1/models/plain/predict",
                    content=png(np.zeros((4, 4))),
                    headers={"content-type": "image/png"},
                )

    reply = anyio.run(go)
    assert reply.status_code == 415 and "takes no image body" in reply.json()["message"]


def test_a_fields_own_max_length_wins_over_the_servers_string_limit() -> None:
    from modelyard.contracts import RecordValidator

    schema = Schema.of(
        Field(name="long", dtype="string", max_length=10), Field(name="short", dtype="string")
    )
    validator = RecordValidator(schema)
    columns = validator.validate_python({"long": "x" * 8, "short": "y"}, max_string_length=5)
    assert columns["long"] == ["x" * 8]
    with pytest.raises(SchemaValidationError, match="more than the 5"):
        validator.validate_python({"long": "x", "short": "y" * 6}, max_string_length=5)
