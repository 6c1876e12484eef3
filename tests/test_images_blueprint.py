"""The images blueprint: digits to two registered versions, trained resumably, served
behind a sticky A/B test whose report says which is better and how sure."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mlxtend")
torch = pytest.importorskip("torch")

import modelyard  # noqa: E402
from cli_support import run_cli  # noqa: E402
from modelyard.blueprints import write_template  # noqa: E402
from modelyard.blueprints.images import load_images, quickstart, settings_of  # noqa: E402
from modelyard.blueprints.images._fit import fit, resolve_device  # noqa: E402
from modelyard.blueprints.images._network import DigitNet  # noqa: E402
from modelyard.errors import ConfigError  # noqa: E402
from modelyard.registry.flavors.image import ImageSpec  # noqa: E402
from modelyard.release import ab_report  # noqa: E402
from modelyard.release._ab_report import newcombe, wilson  # noqa: E402

SMALL = """
[blueprint.champion]
filters = 8
epochs = 2

[blueprint.challenger]
filters = 2
epochs = 1
"""


def small_workspace(folder: Path, extra: str = "ab_requests = 400\n") -> modelyard.Workspace:
    """The template with small networks (a second each) and ``extra`` under [blueprint]."""
    write_template("images", folder)
    config = folder / "modelyard.toml"
    text = config.read_text()
    text = re.sub(
        r"\[blueprint\.champion\].*?\[blueprint\.challenger\]\nfilters = 8\nepochs = 3\n",
        "",
        text,
        flags=re.S,
    )
    text = text.replace('name = "images"\n', f'name = "images"\n{extra}', 1)
    config.write_text(text + SMALL)
    return modelyard.Workspace(folder)


def artifact(ws: modelyard.Workspace, run_id: str, path: str) -> bytes:
    (found,) = [a for a in ws.runs.get(run_id).artifacts if a["path"] == path]
    return ws.artifacts.get(found["digest"])


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[modelyard.Workspace, Any]:
    ws = small_workspace(tmp_path_factory.mktemp("images") / "ws")
    return ws, quickstart(ws)


def test_quickstart_registers_champion_and_challenger_with_metrics_and_resources(
    done: tuple[modelyard.Workspace, Any],
) -> None:
    ws, result = done
    champion = ws.registry.get("digits@production")
    challenger = ws.registry.get("digits@challenger")
    assert result["version"].version == champion.version != challenger.version
    assert champion.flavor == "image"
    m = champion.metrics
    assert m["accuracy"] > 0.85  # width 8, two epochs on 4,000 real digits
    for digit in range(10):
        assert 0 <= m[f"precision_{digit}"] <= 1 and 0 <= m[f"recall_{digit}"] <= 1
    assert m["parameters"] == sum(p.numel() for p in DigitNet(filters=8).parameters())
    assert 0 < m["model_size_mb"] < 5
    assert m["train_images_per_s"] > 0 and m["train_seconds"] > 0 and m["train_peak_rss_mb"] > 0
    for size in (1, 8, 32, 128):
        assert m[f"latency_ms_batch_{size}"] > 0
    assert champion.tags["device"] == "cpu" and champion.tags["device_name"].startswith("cpu")
    assert "train_peak_gpu_mb" not in m  # on the CPU
    assert challenger.metrics["parameters"] < m["parameters"]
    assert result["spec"] == "serve.toml"
    assert "A/B test" in result["summary"]


def test_the_confusion_matrix_is_an_artifact_that_agrees_with_the_accuracy(
    done: tuple[modelyard.Workspace, Any],
) -> None:
    ws, _ = done
    version = ws.registry.get("digits@production")
    matrix = json.loads(artifact(ws, version.run_id or "", "confusion_matrix.json"))
    counts = np.asarray(matrix["matrix"])
    assert matrix["labels"] == [str(d) for d in range(10)]
    assert counts.sum() == 1000  # 20% of each class held out
    assert np.trace(counts) / counts.sum() == pytest.approx(version.metrics["accuracy"])
    for digit in range(10):
        assert counts[digit, digit] / counts[digit].sum() == pytest.approx(
            version.metrics[f"recall_{digit}"]
        )
    resources = json.loads(artifact(ws, version.run_id or "", "resources.json"))
    assert resources["device"] == "cpu" and resources["parameters"] == version.metrics["parameters"]


def test_every_epoch_is_tracked(
    done: tuple[modelyard.Workspace, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = done
    version = ws.registry.get("digits@production")
    run_id = version.run_id or ""
    history = ws.runs.history(run_id, "test_accuracy")
    assert [point.step for point in history] == [1, 2]
    code, out, _ = run_cli(
        capsys, "runs", "show", run_id, "--history", "test_accuracy", "-w", str(ws.root)
    )
    assert code == 0 and "test_accuracy by step" in out
    assert f"{history[1].value:.4g}"[:5] in out
    code, _, err = run_cli(capsys, "runs", "show", run_id, "--history", "nope", "-w", str(ws.root))
    assert code == 2 and "has no metric 'nope'" in err


def test_the_ab_test_is_sticky_and_reported(done: tuple[modelyard.Workspace, Any]) -> None:
    ws, _ = done
    predictions = ws.predictions.read("digits").to_pandas()
    assert set(predictions["variant"]) == {"production", "challenger"}
    per_client = predictions.groupby("input.client_id")["variant"].nunique()
    assert (per_client == 1).all()  # one client, one version
    report = ab_report(ws.predictions, "digits")
    assert report.champion.labelled + (report.candidate.labelled if report.candidate else 0) == 400
    assert report.difference is not None and report.difference_low is not None
    assert report.difference_low < report.difference < (report.difference_high or 0)
    assert report.verdict in ("promote", "keep_champion", "keep_collecting")
    # the champion is far wider (8 filters against 2): the report sees it with 400 labels
    assert report.champion.accuracy is not None and report.candidate is not None
    assert report.candidate.accuracy is not None
    if report.verdict == "keep_champion":
        assert (report.difference_high or 0) < 0


def test_the_ab_report_command(
    done: tuple[modelyard.Workspace, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = done
    code, out, _ = run_cli(capsys, "release", "ab-report", "digits", "-w", str(ws.root))
    assert code == 0
    assert "production" in out and "challenger" in out and "difference" in out
    code, out, _ = run_cli(capsys, "release", "ab-report", "digits", "--json", "-w", str(ws.root))
    assert json.loads(out)["champion"]["variant"] == "production"
    for args, message in [
        (["nope"], "model 'nope' is not registered"),
        (["digits", "--candidate", "zz"], "no requests of model 'digits' went to variant 'zz'"),
        (["digits", "--confidence", "2"], "confidence 2"),
        (["digits", "--candidate", "production"], "both 'production'"),
    ]:
        code, out, err = run_cli(capsys, "release", "ab-report", *args, "-w", str(ws.root))
        assert code == 2 and message in err and "Traceback" not in err, err


def test_a_second_quickstart_keeps_the_versions_and_sends_no_copies(
    done: tuple[modelyard.Workspace, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ws, first = done
    logged = ws.predictions.read("digits").num_rows
    again = quickstart(modelyard.Workspace(ws.root))
    assert again["version"].version == first["version"].version
    assert len(ws.registry.versions("digits")) == 2
    assert ws.predictions.read("digits").num_rows == logged  # the same images, not again
    assert "sent by an earlier run" in again["summary"]
    # The job with unchanged settings points the alias at the version they made.
    code, out, err = run_cli(capsys, "jobs", "run", "train", "-w", str(ws.root))
    assert code == 0, out + err
    assert len(ws.registry.versions("digits")) == 2


def test_wilson_and_newcombe_match_the_published_example() -> None:
    # Newcombe (1998), table II, example (a): 56/70 against 48/80.
    d, low, high = newcombe((48, 80), (56, 70), 1.959964)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    assert wilson(0, 10, 1.959964) == (0.0, pytest.approx(0.2775, abs=1e-4))


def _slice(n: int = 600) -> tuple[Any, Any, ImageSpec]:
    ws_free = settings_of_defaults()
    data = load_images(ws_free, Path("."))
    spec = ImageSpec(height=28, width=28, mean=(0.5,), std=(0.5,))
    return (data.train_x[:n], data.train_y[:n]), (data.test_x[:200], data.test_y[:200]), spec


def settings_of_defaults() -> Any:
    from modelyard.blueprints.images import parse_settings

    return parse_settings({"name": "images"})


def _train(folder: Path, epochs: int, stop_after: int | None = None) -> dict[str, Any]:
    train, test, spec = _slice()
    torch.manual_seed(7)
    network = DigitNet(filters=4)

    def stop(epoch: int, _: dict[str, float]) -> None:
        if stop_after is not None and epoch == stop_after:
            raise KeyboardInterrupt  # Ctrl+C, or a kill, after this epoch's checkpoint

    fitted = fit(
        network,
        train,
        test,
        spec,
        epochs=epochs,
        batch_size=64,
        learning_rate=1e-3,
        seed=7,
        device="cpu",
        checkpoints=folder,
        key="k",
        on_epoch=stop,
    )
    return {
        "state": fitted.network.state_dict(),
        "resumed": fitted.resumed_epochs,
        "history": fitted.history,
    }


def test_cpu_training_is_deterministic_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = _train(tmp_path / "a", epochs=3)
    again = _train(tmp_path / "b", epochs=3)
    for name, value in straight["state"].items():
        assert torch.equal(value, again["state"][name]), name
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "c", epochs=3, stop_after=2)
    assert (tmp_path / "c" / "last.pt").exists()
    resumed = _train(tmp_path / "c", epochs=3)
    assert resumed["resumed"] == 2 and len(resumed["history"]) == 3
    for name, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][name]), name


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, epochs=2, stop_after=1)
    train, test, spec = _slice()
    fitted = fit(
        DigitNet(filters=4),
        train,
        test,
        spec,
        epochs=1,
        batch_size=64,
        learning_rate=1e-3,
        seed=7,
        device="cpu",
        checkpoints=tmp_path,
        key="other settings",
    )
    assert fitted.resumed_epochs == 0


def test_cuda_asked_for_without_cuda_is_refused_in_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")


def _pictures(folder: Path) -> None:
    """Two classes of 32x32 RGB pictures (bright discs, dark squares), one GIF and one
    damaged PNG among them."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for name, shape in (("discs", "ellipse"), ("squares", "rectangle")):
        (folder / name).mkdir(parents=True)
        for i in range(30):
            image = Image.new("RGB", (40, 36), tuple(int(v) for v in rng.integers(0, 60, 3)))
            draw = ImageDraw.Draw(image)
            a, b = int(rng.integers(2, 10)), int(rng.integers(22, 32))
            getattr(draw, shape)(
                [a, a, b, b], fill=(230, 200, 40) if shape == "ellipse" else (40, 90, 230)
            )
            image.save(folder / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    Image.new("RGB", (8, 8)).save(folder / "discs" / "odd.gif")
    (folder / "squares" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")


def test_a_folder_of_the_users_pictures_trains_a_colour_model(tmp_path: Path) -> None:
    _pictures(tmp_path / "ws" / "mydata")
    ws = small_workspace(
        tmp_path / "ws",
        'data = "mydata"\nheight = 32\nwidth = 32\nchannels = 3\nab_requests = 0\n',
    )
    data = load_images(settings_of(ws), ws.root)
    assert data.classes == ["discs", "squares"]
    assert data.train_x.shape[1:] == (3, 32, 32)
    assert len(data.train_y) + len(data.test_y) == 60  # the GIF (by suffix) and the damaged PNG out
    skipped = sorted(s.split(":")[0] for s in data.skipped)
    assert skipped == ["discs/odd.gif", "squares/broken.png"]
    result = quickstart(ws)
    assert result["version"].metrics["accuracy"] >= 0.5
    assert result["version"].signature.outputs.names[:2] == ["prediction", "probability"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("channels = 2", "blueprint.channels"),
        ('data = "nowhere"', "is not a folder"),
        ('device = "tpu"', "blueprint.device"),
        ("ab_requests = true", "blueprint.ab_requests"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    ws_folder = tmp_path / "ws"
    small_workspace(ws_folder, f"{line}\n")
    code, _, err = run_cli(
        capsys, "quickstart", "--blueprint", "images", "--no-serve", str(ws_folder)
    )
    assert code == 2 and message in err and "Traceback" not in err, err


def test_a_class_folder_with_one_picture_is_refused(tmp_path: Path) -> None:
    _pictures(tmp_path / "mydata")
    for extra in list((tmp_path / "mydata" / "squares").iterdir())[1:]:
        extra.unlink()
    settings = settings_of_defaults().model_copy(
        update={"data": "mydata", "height": 32, "width": 32}
    )
    with pytest.raises(ConfigError, match="readable PNG/JPEG"):
        load_images(settings, tmp_path)


def test_the_ab_page_shows_the_report_and_the_confusion_matrices(
    done: tuple[modelyard.Workspace, Any],
) -> None:
    from ui_support import get

    ws, _ = done
    page, missing, bad = get(ws, "/ui/ab", "/ui/ab?model=nope", "/ui/ab?since=soon")
    assert page.status_code == 200
    html = page.text
    report = ab_report(ws.predictions, "digits")
    assert f"verdict-{report.verdict}" in html
    assert '<tr data-variant="production">' in html and '<tr data-variant="challenger">' in html
    assert html.count('<svg class="chart interval"') == 2  # accuracies, and the difference
    assert 'class="zero"' in html
    assert html.count('<table class="confusion"') == 2
    assert "model &#39;nope&#39; is not registered; the models are digits" in missing.text
    assert bad.status_code == 422 and 'id="ab-error"' in bad.text


def test_the_ab_page_in_a_browser(done: tuple[modelyard.Workspace, Any]) -> None:
    from browser_support import Watched, browser, chromium_path, dashboard

    ws, _ = done
    chromium_path()  # skips here without chromium (fails under CI=true)
    with dashboard(ws.root, "/ui/ab") as url, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        watched = Watched()
        watched.attach(page)
        page.goto(f"{url}/ui/runs")
        page.get_by_role("link", name="A/B tests").click()
        page.wait_for_load_state("networkidle")
        assert page.locator("header a.here").inner_text() == "A/B tests"
        assert page.locator("section.model[data-model='digits'] .verdict").is_visible()
        assert page.locator("table.variants tbody tr").count() == 2
        dot = page.locator("svg.chart.interval circle").first
        assert "production" in (dot.locator("title").text_content() or "")
        first_row = page.locator("table.confusion[data-variant='production'] tbody tr").first
        assert first_row.locator("td").count() == 10
        page.locator("table.variants a").first.click()
        page.wait_for_load_state("networkidle")
        assert "/ui/models/digits" in page.url
        assert watched.console_errors == [] and watched.failed == []


def test_each_training_measures_its_own_peak_memory() -> None:
    from modelyard.blueprints._resources import peak_rss_mb, reset_peak_rss

    if not reset_peak_rss():
        pytest.skip("this platform cannot reset the high-water mark")
    big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    high = peak_rss_mb() or 0.0
    del big
    assert reset_peak_rss()
    assert (peak_rss_mb() or 0.0) < high - 200


def test_the_served_ab_test_refuses_a_request_mixing_clients(
    done: tuple[modelyard.Workspace, Any],
) -> None:
    import anyio
    import httpx

    from modelyard.blueprints.images import encode_png
    from modelyard.blueprints.images._quickstart import serve_spec
    from modelyard.serving import create_app

    ws, _ = done
    _, options = serve_spec(ws, settings_of(ws))
    app = create_app(ws.registry, [options], poll_interval_s=0)
    data = load_images(settings_of(ws), ws.root)
    image = encode_png(data.test_x[0])
    big = b"\x89PNG" + bytes(5 * 2**20)  # 5 MiB: over the image limit, under the body's

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                url = "/v1/models/digits/predict"
                mixed = [{"image": image, "client_id": f"c{i}"} for i in range(20)]
                one = [{"image": image, "client_id": "c1"}] * 3
                pixels = {
                    "inputs": [
                        {"name": "image", "datatype": "UINT8", "shape": [28, 28], "data": [0] * 784}
                    ]
                }
                return [
                    await c.post(url, json=mixed),
                    await c.post(url, json=one),
                    await c.post("/v2/models/digits/infer", json=pixels),
                    await c.post(url, content=big, headers={"content-type": "image/png"}),
                ]

    mixed, one, pixels, big_reply = anyio.run(go)
    assert mixed.status_code == 422 and "send one client_id per request" in mixed.json()["message"]
    assert one.status_code == 200 and len(one.json()["predictions"]) == 3
    assert pixels.status_code == 422
    assert "[rows, height, width]" in pixels.json()["message"]
    assert big_reply.status_code == 422
    assert "the largest image accepted is 4.0 MiB" in big_reply.json()["message"]


def test_a_missing_serve_spec_says_how_to_write_it_again(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path / "ws")
    (ws.root / "serve.toml").unlink()
    with pytest.raises(ConfigError, match="modelyard init --blueprint images"):
        quickstart(ws)
