"""`imagerec serve`: /health, /predict, and JSON 4xx answers (never a 500) for bad uploads."""
import io
import socket
import threading
import time
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from imagerec import images, inference, serve
import fixtures
import serving



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return fixtures.write_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def client(model_dir) -> TestClient:
    with TestClient(serve.create_app(model_dir), raise_server_exceptions=False) as client:
        yield client


def upload(data: bytes, name: str = "two.png", content_type: str = "image/png") -> dict:
    return {"file": (name, data, content_type)}


def test_health_names_the_model_and_its_classes(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "mnist", "classes": fixtures.TINY_CLASSES}


def test_predict_returns_the_right_label_for_an_uploaded_png(client):
    response = client.post("/predict", files=upload(fixtures.image_of(2)))
    body = response.json()
    assert response.status_code == 200
    assert body["file"] == "two.png"
    assert [p["label"] for p in body["predictions"]][0] == "two"
    assert len(body["predictions"]) == 3


def test_predict_takes_top_k_from_the_query(client):
    response = client.post("/predict", params={"top_k": 1}, files=upload(fixtures.image_of(5, "JPEG"), "five.jpg", "image/jpeg"))
    assert response.status_code == 200
    assert [p["label"] for p in response.json()["predictions"]] == ["five"]


@pytest.mark.parametrize("top_k", ["0", "many"])
def test_a_bad_top_k_gets_422_with_a_json_error(client, top_k):
    response = client.post("/predict", params={"top_k": top_k}, files=upload(fixtures.image_of(2)))
    assert response.status_code == 422
    assert response.json()["error"].startswith("top_k: ")


def test_a_text_upload_gets_422_with_a_json_error(client):
    response = client.post("/predict", files=upload(b"hello, I am text\n", "photo.jpg", "image/jpeg"))
    assert response.status_code == 422
    assert response.json() == {"error": "photo.jpg: not an image (unknown format)"}


def test_a_truncated_upload_gets_422_with_a_json_error(client):
    data = fixtures.image_of(3, size=64)
    response = client.post("/predict", files=upload(data[: len(data) // 2], "cut.png"))
    assert response.status_code == 422
    assert response.json()["error"].startswith("cut.png: cannot decode:")


def test_a_request_without_the_file_field_gets_422_with_a_json_error(client):
    response = client.post("/predict", data={"image": "x"})
    assert response.status_code == 422
    assert response.json() == {"error": "file: Field required"}


def test_an_upload_over_the_size_limit_gets_413(client):
    response = client.post("/predict", files=upload(b"\0" * (serve.MAX_REQUEST_BYTES + 1), "huge.png"))
    assert response.status_code == 413
    assert response.json() == {"error": f"request larger than {serve.MAX_REQUEST_BYTES} bytes"}


def test_an_oversized_upload_without_content_length_gets_413_too(client):
    """A chunked request announces no size: the limit must count the bytes as they arrive."""
    boundary = "imagerec-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * (serve.MAX_REQUEST_BYTES + 1) \
        + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i:i + 2**20] for i in range(0, len(body), 2**20))
    response = client.post("/predict", content=chunks,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert response.json() == {"error": f"request larger than {serve.MAX_REQUEST_BYTES} bytes"}


def test_a_decompression_bomb_gets_422_with_a_json_error(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    response = client.post("/predict", files=upload(fixtures.image_of(4, size=64), "bomb.png"))
    assert response.status_code == 422
    assert response.json() == {"error": "bomb.png: too many pixels (decompression bomb?)"}


def test_an_unknown_path_gets_404_with_a_json_error(client):
    response = client.get("/nowhere")
    assert (response.status_code, response.json()) == (404, {"error": "Not Found"})


def test_the_real_server_answers_health_and_predict(model_dir, tmp_path):
    with serving.serving(model_dir, log_path=tmp_path / "server.log", start_timeout=60) as base:
        health = requests.get(f"{base}/health", timeout=2)
        assert health.json()["status"] == "ok"
        response = requests.post(f"{base}/predict", params={"top_k": 2}, files=upload(fixtures.image_of(7)), timeout=30)
        assert response.status_code == 200
        assert [p["label"] for p in response.json()["predictions"]][0] == "seven"
    assert "POST /predict" not in (tmp_path / "server.log").read_text()  # no access log unless asked for


def png_of_size(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")  # one colour: a few kB however large
    return buffer.getvalue()


def test_an_image_of_more_pixels_than_served_is_refused_from_its_header(client, monkeypatch):
    side = int(serve.MAX_IMAGE_PIXELS ** 0.5) + 1
    wide, decoded, load = png_of_size(side, side), [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image) or load(image))
    response = client.post("/predict", files=upload(wide, "wide.png"))
    assert response.status_code == 422
    assert response.json() == {"error": f"wide.png: {side}x{side} pixels: more than the "
                                        f"{serve.MAX_IMAGE_PIXELS:,} accepted here"}
    assert decoded == []  # refused before a single pixel was decoded


def test_a_large_jpeg_is_decoded_at_reduced_scale_to_nearly_the_same_pixels():
    photo = np.asarray(Image.open(io.BytesIO(fixtures.image_of(7, "PNG", size=64))).convert("RGB").resize((2000, 1600)))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=95)
    full = images.decode(buffer.getvalue(), 28, "grayscale")
    reduced = images.decode(buffer.getvalue(), 28, "grayscale", max_pixels=serve.MAX_IMAGE_PIXELS)
    assert reduced.shape == full.shape == (28, 28, 1)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(model_dir, server_log):
    """The real server (uvicorn, its connection handling) with short deadlines, a small queue and
    its access log."""
    options = ("--header-seconds", "2", "--body-seconds", "2", "--max-pending", "6", "--access-log")
    with serving.serving(model_dir, log_path=server_log, start_timeout=60, options=options) as base:
        yield base


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (recv then returns no bytes)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except socket.timeout:
        return False


def test_idle_connections_neither_lock_others_out_nor_stay_open(server):
    host, port = server.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(100)]
    try:
        assert requests.get(f"{server}/health", timeout=5).status_code == 200
        assert closed_within(idle[0], 5)
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize("head", [b"GET /health HTTP/1.1\r\nHost: x\r\n",  # headers, a byte at a time
                                  b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"])  # body
def test_a_client_dripping_bytes_is_cut_off_at_the_deadline(server, head):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head)
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < 6:
            try:
                sock.sendall(b"X")
            except OSError:  # the server has closed it
                break
            closed = closed_within(sock, 0.5)
        assert time.monotonic() - started < 6


def test_a_burst_is_served_up_to_the_queue_bound_and_refused_beyond_with_json_503(server, server_log):
    def one(_):
        return requests.post(f"{server}/predict", files=upload(fixtures.image_of(3)), timeout=60)

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one, range(64)))
    by_status = Counter(answer.status_code for answer in answers)
    assert set(by_status) == {200, 503} and by_status[200] >= 6, by_status
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.headers["Retry-After"] == "1"
    assert busy.json() == {"error": "busy: 6 requests in progress; try again shortly"}
    with ThreadPoolExecutor(6) as pool:  # within the bound: every one served
        assert {answer.status_code for answer in pool.map(one, range(6))} == {200}
    assert '"POST /predict HTTP/1.1" 503' in server_log.read_text()  # --access-log: a line per request


def test_concurrent_predictions_run_as_one_batch_and_each_gets_its_own_answer(model_dir, monkeypatch):
    batches, predict = [], inference.predict
    monkeypatch.setattr(inference, "predict", lambda run, pixels, *args: batches.append(len(pixels))
                        or predict(run, pixels, *args))
    digits = [7, 1, 3, 0, 5, 2, 9, 4]
    with TestClient(serve.create_app(model_dir, batch_wait_ms=500)) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: client.post("/predict", files=upload(fixtures.image_of(d))), digits))
    assert [answer.json()["predictions"][0]["label"] for answer in answers] == [fixtures.TINY_CLASSES[d] for d in digits]
    assert sum(batches) == 8 and max(batches) > 1, batches


def test_a_batch_waits_for_images_on_their_way_and_for_nothing_else(monkeypatch):
    batches = []
    monkeypatch.setattr(inference, "predict", lambda run, pixels, *args: batches.append(len(pixels))
                        or np.zeros((len(pixels), 2)))
    stub = types.SimpleNamespace(run=None, dataset="stub")
    batcher = serve.MicroBatcher(stub, max_batch=8, wait_seconds=600, model_lock=threading.Lock())
    pixels = np.zeros((4, 4, 1), np.float32)
    with batcher.arriving() as submit_first, batcher.arriving() as submit_second:
        first = submit_first(pixels)
        time.sleep(0.3)
        assert not first.done()  # the second image is on its way: the batch waits for it
        second = submit_second(pixels)
    first.result(timeout=30), second.result(timeout=30)
    with batcher.arriving() as submit:  # alone: runs at once, not after the 600 s wait
        submit(pixels).result(timeout=30)
    with batcher.arriving() as submit:
        with batcher.arriving():  # this request's upload turns out not to be an image
            waiting = submit(pixels)
            time.sleep(0.3)
            assert not waiting.done()
        waiting.result(timeout=30)  # nothing more on its way: runs without waiting out the 600 s
    assert batches == [2, 1, 1]
