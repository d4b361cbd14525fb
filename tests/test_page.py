"""The page of `imagerec serve`: its API (TestClient) and, where Chromium is installed, the page
itself driven in headless Chromium against a real server on 127.0.0.1."""
import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import fixtures
import browser
import serving
from imagerec import cli, modelcard, serve

TINY_METRICS = {"accuracy": 0.9321, "loss": 0.2468, "roc_auc_macro": 0.9876, "test_images": 60,
                "per_class": {name: {"precision": 0.9, "recall": 0.8} for name in fixtures.TINY_CLASSES}}


def tiny_model_at(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True)
    return fixtures.write_tiny_model(model_dir)


# confusion.csv as evaluate writes it (one actual,predicted row per test image): "one" is right
# twice and once taken for "seven", "seven" right once.
CONFUSION_CSV = "actual,predicted\none,one\none,one\none,seven\nseven,seven\n"
PR_POINTS = [{"recall": r, "precision": p, "curve": c} for c in ("one", "seven", "micro-average")
             for r, p in ((0.0, 1.0), (0.5, 0.9), (1.0, 0.6))]


def write_results(root: Path, dataset: str = "mnist") -> Path:
    """What the pipeline writes for a dataset, in small: metrics, the confusion and precision-recall
    plot data, the training curves, the explore statistics and params.yaml (but no ROC curve: it
    is "not available")."""
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "metrics" / f"{dataset}.json").write_text(json.dumps(TINY_METRICS))
    plots = root / "plots" / dataset
    (plots / "evaluate").mkdir(parents=True, exist_ok=True)
    (plots / "evaluate" / "confusion.csv").write_text(CONFUSION_CSV)
    (plots / "evaluate" / "pr.json").write_text(json.dumps(PR_POINTS))
    for split, values in {"train": [0.9, 0.5, 0.3], "eval": [0.8, 0.6, 0.45]}.items():
        for metric, series in {"loss": values, "accuracy": [1 - v for v in values]}.items():
            path = plots / "train" / "plots" / "metrics" / split / f"{metric}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"step\t{metric}\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(series)))
    (plots / "explore").mkdir(parents=True, exist_ok=True)
    (plots / "explore" / "stats.json").write_text(json.dumps(
        {"classes": fixtures.TINY_CLASSES, "image_shape": [28, 28, 1], "totals": {"train": 200, "val": 20, "test": 60},
         "counts": {"train": {"zero": 20}}, "unreadable_images": 0, "ignored_files": 0}))
    (root / "params.yaml").write_text(f"datasets:\n  {dataset}:\n    seed: 7\n    fetch:\n      source: keras\n    train:\n      epochs: 3\n")
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A repository in small: models/mnist (the tiny model) beside the pipeline's results for it."""
    root = tmp_path_factory.mktemp("repo")
    tiny_model_at(root / "models" / "mnist")
    return write_results(root)


@pytest.fixture(scope="module")
def model_dir(repo) -> Path:
    return repo / "models" / "mnist"


@pytest.fixture(scope="module")
def client(model_dir) -> TestClient:
    with TestClient(serve.create_app(model_dir), raise_server_exceptions=False) as client:
        yield client


def upload(data: bytes, name: str = "seven.png") -> dict:
    return {"file": (name, data, "image/png")}


# ---------- the page's files: served by the app itself, nothing from the internet ----------

def test_the_page_is_served_at_the_root_with_its_script_and_style(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js">' in page.text and 'href="/static/style.css"' in page.text
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


def test_the_page_loads_nothing_from_elsewhere():
    """No CDN, font service or absolute URL: the page works offline (the SVG namespace is a name, not a request)."""
    for path in sorted(serve.WEB_DIR.iterdir()):
        text = path.read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path.name
        assert "@import" not in text and "url(" not in text.replace("data:", ""), path.name
    assert set(re.findall(r'(?:src|href)="([^"]*)"', (serve.WEB_DIR / "index.html").read_text())) == {
        "data:,", "/static/style.css", "/static/app.js", "/models", "/health"}


@pytest.mark.parametrize("path", ["/static/../serve.py", "/static/%2e%2e/serve.py", "/static/nothing.js"])
def test_only_the_page_files_are_static(client, path):
    response = client.get(path)
    assert (response.status_code, response.json()) == (404, {"error": "Not Found"})


# ---------- the API the page uses ----------

def test_models_lists_the_model_with_its_classes_and_the_upload_limit(client):
    assert client.get("/models").json() == {
        "max_request_bytes": serve.MAX_REQUEST_BYTES,
        "models": [{"name": "mnist", "dataset": "mnist", "format": "keras", "classes": fixtures.TINY_CLASSES,
                    "input_size": 28, "color_mode": "grayscale"}]}


def test_predict_with_gradcam_returns_the_heat_map_of_the_top_label_as_a_png(client):
    response = client.post("/predict", params={"gradcam": "true", "top_k": 2}, files=upload(fixtures.image_of(7)))
    body = response.json()
    assert response.status_code == 200
    assert [p["label"] for p in body["predictions"]][0] == "seven" and body["model"] == "mnist"
    explained = body["gradcam"]
    assert (explained["label"], explained["method"], explained["size"]) == ("seven", "hirescam", [28, 28])
    prefix = "data:image/png;base64,"
    assert explained["png"].startswith(prefix)
    heat = Image.open(io.BytesIO(base64.b64decode(explained["png"][len(prefix):])))
    assert (heat.format, heat.size, heat.mode) == ("PNG", (28, 28), "RGB")
    assert np.asarray(heat).std() > 0  # a map, not a flat colour


def test_predict_without_gradcam_answers_as_before(client):
    body = client.post("/predict", files=upload(fixtures.image_of(2))).json()
    assert "gradcam" not in body and body["predictions"][0]["label"] == "two"


def test_a_model_without_a_convolution_gets_predictions_and_a_heat_map_error(tmp_path):
    import keras

    from imagerec import models

    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
    models.save(keras.Model(inputs, outputs), tmp_path, fixtures.TINY_CARD)
    with TestClient(serve.create_app(tmp_path), raise_server_exceptions=False) as dense_client:
        response = dense_client.post("/predict", params={"gradcam": "true"}, files=upload(fixtures.image_of(7)))
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 3
    assert "no convolutional feature map" in response.json()["gradcam"]["error"]


def test_several_models_are_told_apart_by_the_model_parameter(model_dir, tmp_path):
    other = tiny_model_at(tmp_path / "exports" / "mnist")
    with TestClient(serve.create_app([model_dir, other]), raise_server_exceptions=False) as two:
        names = [m["name"] for m in two.get("/models").json()["models"]]
        assert names == ["mnist", "mnist-2"]
        assert two.get("/health").json() == {"status": "ok", "models": [
            {"model": "mnist", "classes": fixtures.TINY_CLASSES}, {"model": "mnist-2", "classes": fixtures.TINY_CLASSES}]}
        chosen = two.post("/predict", params={"model": "mnist-2"}, files=upload(fixtures.image_of(7)))
        assert (chosen.status_code, chosen.json()["model"]) == (200, "mnist-2")
        unnamed = two.post("/predict", files=upload(fixtures.image_of(7)))
        assert unnamed.status_code == 422
        assert unnamed.json() == {"error": "model: required when serving several models (one of: mnist, mnist-2)"}
        unknown = two.post("/predict", params={"model": "cifar10"}, files=upload(fixtures.image_of(7)))
        assert unknown.status_code == 422 and unknown.json()["error"] == "model: no model 'cifar10' (serving: mnist, mnist-2)"
        # The second dir's results root is tmp_path, which holds none: its card says so.
        assert two.get("/models/mnist-2/card").json()["metrics"] is None
        assert two.get("/models/mnist/card").json()["metrics"] == TINY_METRICS


def test_the_cli_takes_several_model_dirs_and_a_results_root():
    args = cli.parser().parse_args(["serve", "models/mnist", "models/cifar10", "--results", "elsewhere"])
    assert (args.model_dirs, args.results) == ([Path("models/mnist"), Path("models/cifar10")], Path("elsewhere"))


# ---------- the model card ----------

def test_the_card_shows_what_the_pipeline_wrote_and_not_available_for_the_rest(client):
    card = client.get("/models/mnist/card").json()
    assert (card["name"], card["dataset"], card["classes"]) == ("mnist", "mnist", fixtures.TINY_CLASSES)
    assert card["metrics"] == TINY_METRICS
    assert card["params"] == {"from": "params.yaml (now; the model card does not record them)",
                              "values": {"seed": 7, "fetch": {"source": "keras"}, "train": {"epochs": 3}}}
    assert card["data"]["values"] == {"source": "keras", "split_sizes": {"train": 200, "val": 20, "test": 60},
                                      "image_shape": [28, 28, 1], "unreadable_images": 0, "ignored_files": 0,
                                      "images_per_class": {"train": {"zero": 20}}}
    assert card["files"]["confusion.csv"] == "/models/mnist/files/confusion.csv"
    assert card["files"]["train_loss.tsv"] == "/models/mnist/files/train_loss.tsv"
    assert card["files"]["roc.json"] is None and card["files"]["gradcam.png"] is None
    assert set(card["files"]) == set(modelcard.FILES)


def test_params_and_data_recorded_in_the_model_card_come_first(tmp_path):
    root = write_results(tmp_path)
    model_dir = tiny_model_at(root / "models" / "mnist")
    card = json.loads((model_dir / "model.json").read_text())
    card.update(params={"seed": 42, "train": {"epochs": 15}}, data={"source": "keras", "splits": {"train": 54000}})
    (model_dir / "model.json").write_text(json.dumps(card))
    with TestClient(serve.create_app(model_dir)) as carded:
        shown = carded.get("/models/mnist/card").json()
    assert shown["params"] == {"from": "model card", "values": {"seed": 42, "train": {"epochs": 15}}}
    assert shown["data"] == {"from": "model card", "values": {"source": "keras", "splits": {"train": 54000}}}


def test_unreadable_results_are_not_available_rather_than_errors(tmp_path):
    root = write_results(tmp_path)
    (root / "metrics" / "mnist.json").write_text("{not json")
    (root / "params.yaml").write_text("mnist: [unclosed\n")
    (root / "plots" / "mnist" / "explore" / "stats.json").write_text("[1, 2]")
    model_dir = tiny_model_at(root / "models" / "mnist")
    with TestClient(serve.create_app(model_dir), raise_server_exceptions=False) as broken:
        response = broken.get("/models/mnist/card")
    assert response.status_code == 200
    assert [response.json()[k] for k in ("metrics", "params", "data")] == [None, None, None]


def test_a_results_root_can_be_given(model_dir, tmp_path):
    elsewhere = write_results(tmp_path / "elsewhere")
    (elsewhere / "metrics" / "mnist.json").write_text(json.dumps({"accuracy": 0.5}))
    with TestClient(serve.create_app(model_dir, results_root=elsewhere)) as rooted:
        assert rooted.get("/models/mnist/card").json()["metrics"] == {"accuracy": 0.5}


def test_a_card_whose_dataset_is_not_a_plain_name_reads_no_results(tmp_path):
    root = write_results(tmp_path)
    model_dir = tiny_model_at(root / "models" / "odd")
    card = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps({**card, "dataset": "../metrics"}))
    with TestClient(serve.create_app(model_dir)) as odd:
        assert [m["name"] for m in odd.get("/models").json()["models"]] == ["odd"]
        shown = odd.get("/models/odd/card").json()
    assert shown["metrics"] is None and not any(shown["files"].values())


def test_model_files_serves_the_pipeline_plot_data_and_curves(client):
    confusion = client.get("/models/mnist/files/confusion.csv")
    assert (confusion.status_code, confusion.text) == (200, CONFUSION_CSV)
    assert client.get("/models/mnist/files/pr.json").json() == PR_POINTS
    curve = client.get("/models/mnist/files/eval_loss.tsv")
    assert curve.status_code == 200 and curve.text.startswith("step\tloss\n0\t0.8\n")


@pytest.mark.parametrize("path", [
    "/models/mnist/files/roc.json",                     # a known file the results lack
    "/models/mnist/files/roc.png",                      # no longer drawn: the page draws roc.json
    "/models/mnist/files/model.json",                   # not one of the pipeline's figures
    "/models/mnist/files/..%2F..%2Fparams.yaml",        # traversal, encoded
    "/models/mnist/files/../../../params.yaml",
    "/models/mnist/files/%2e%2e",
    "/models/other/files/confusion.csv",                # no such model
    "/models/other/card",
])
def test_model_files_answers_404_for_anything_else(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "error" in response.json()


# ---------- in a real browser ----------

BROWSER_MISSING = browser.missing()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser tests skipped: {BROWSER_MISSING}")


@pytest.fixture(scope="module")
def page_server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving.serving(model_dir, log_path=log, start_timeout=90) as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    with browser.chromium(1280, 900) as driver:
        yield driver


@pytest.fixture
def page(driver, page_server):
    browser.open_page(driver, page_server, "mnist")
    return driver


def shot(driver, tmp_path, name: str) -> Path:
    path = browser.screenshot_whole_page(driver, tmp_path / name)
    print(f"screenshot: {path}")
    return path


def error_text(driver) -> str:
    return driver.find_element("id", "error").text


@needs_browser
def test_uploading_a_digit_shows_the_top_label_and_the_heat_map(page, tmp_path):
    image = tmp_path / "seven.png"
    image.write_bytes(fixtures.image_of(7))
    assert browser.upload(page, image) == "done"
    labels = [li.get_attribute("data-label") for li in page.find_elements("css selector", "#predictions li")]
    assert labels[0] == "seven" and len(labels) == 5
    assert page.find_element("css selector", "#predictions li .value").text.endswith("%")
    bar = page.find_element("css selector", "#predictions li .bar")
    assert bar.size["width"] > 0.9 * page.find_element("css selector", "#predictions li .track").size["width"]
    heatmap = page.find_element("id", "heatmap")
    assert heatmap.is_displayed() and heatmap.size["width"] > 200
    assert page.execute_script("const h = document.getElementById('heatmap');"
                               "return [h.complete, h.naturalWidth, h.naturalHeight];") == [True, 28, 28]
    assert "“seven”" in page.find_element("id", "heatmap-caption").text
    assert "seven" in page.find_element("id", "status").text
    assert not page.find_element("id", "error").is_displayed()
    assert shot(page, tmp_path, "page.png").stat().st_size > 10_000


@needs_browser
def test_the_mnist_hint_says_that_digits_are_white_on_black(page):
    assert "MNIST digits are white on black" in page.find_element("id", "drop-hint").text


@needs_browser
def test_uploading_a_text_file_shows_a_readable_error(page, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am text\n")
    assert browser.upload(page, text) == "error"
    assert error_text(page) == "Cannot use this file: notes.txt: not an image (unknown format)"
    assert not page.find_element("id", "result").is_displayed()
    shot(page, tmp_path, "page-error.png")


@needs_browser
def test_uploading_a_decompression_bomb_shows_a_readable_error(page, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)  # 100 megapixels in a few kilobytes
    assert bomb.stat().st_size < 100_000
    assert browser.upload(page, bomb) == "error"
    assert error_text(page) == "Cannot use this file: bomb.png: too many pixels (decompression bomb?)"


@needs_browser
def test_a_file_over_the_limit_is_refused_with_a_readable_message(page, tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (serve.MAX_REQUEST_BYTES + 1))
    assert browser.upload(page, huge) == "error"  # checked in the page, before sending
    assert error_text(page) == "huge.png is 10.0 MiB; the server accepts uploads of at most 10.0 MiB."
    # Sent anyway (the page's check lifted), the server's 413 reaches the page as a message too.
    page.execute_script("state.maxBytes = Infinity;")
    assert browser.upload(page, huge) == "error"
    assert error_text(page) == f"Upload too large: request larger than {serve.MAX_REQUEST_BYTES} bytes"


@needs_browser
def test_a_digit_drawn_on_the_canvas_is_predicted(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = page.find_element("id", "draw")
    assert canvas.is_displayed()  # a greyscale model: drawing is offered
    page.execute_script("document.getElementById('result').dataset.state = 'sent';")
    ActionChains(page).move_to_element_with_offset(canvas, -40, -60).click_and_hold() \
        .move_by_offset(80, 0).move_by_offset(-50, 120).release().perform()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(page, 60).until(
        lambda d: d.find_element("id", "result").get_attribute("data-state") == "done" or error_text(d))
    assert not error_text(page)
    assert page.find_element("id", "status").text.startswith("drawing.png: ")
    assert len(page.find_elements("css selector", "#predictions li")) == 5
    shot(page, tmp_path, "page-drawing.png")


@needs_browser
def test_the_model_card_shows_metrics_figures_curves_params_and_data(page, tmp_path):
    browser.open_card(page)
    card = page.find_element("id", "card")
    assert "Model card: mnist" in card.text
    metrics = page.find_element("id", "card-metrics").text
    assert "Accuracy 0.9321" in metrics and "ROC AUC (macro) 0.9876" in metrics
    # The confusion matrix, counted from confusion.csv: rows actual, columns predicted.
    cells = page.execute_script("return [...document.querySelectorAll('#card-confusion tr')].map("
                                "tr => [...tr.querySelectorAll('td')].map(td => td.textContent));")
    assert cells[2][1:] == ["2", "0", "0", "0", "0", "0", "1", "0", "0"] and cells[8][7] == "1"  # one; seven
    assert page.find_element("id", "card-roc").text.endswith("not available")
    # Precision-recall from pr.json: a line per curve, the averaged one dashed, and a legend.
    curves = page.find_elements("css selector", "#card-more svg polyline")
    assert len(curves) == 3 and curves[2].get_attribute("stroke-dasharray") == "5 3"
    assert "micro-average" in page.find_element("id", "card-more").text
    for metric in ("loss", "accuracy"):
        assert len(page.find_elements("css selector", f"#chart-{metric} svg polyline")) == 2  # train and eval
        assert len(page.find_elements("css selector", f"#chart-{metric} svg circle.point")) == 6  # a dot per epoch
    params = page.find_element("id", "card-params").text
    assert "from params.yaml" in params and "epochs" in params
    assert "split_sizes" in page.find_element("id", "card-data").text
    shot(page, tmp_path, "page-card.png")
    page.find_element("id", "tab-try").click()
    assert page.find_element("id", "view-try").is_displayed() and not card.is_displayed()
