"""`imagerec serve`: /health, /predict, and JSON 4xx answers (never a 500) for bad uploads."""
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from PIL import Image

from imagerec import serve
import fixtures



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
    with serve.serving(model_dir, log_path=tmp_path / "server.log", start_timeout=60) as base:
        health = requests.get(f"{base}/health", timeout=2)
        assert health.json()["status"] == "ok"
        response = requests.post(f"{base}/predict", params={"top_k": 2}, files=upload(fixtures.image_of(7)), timeout=30)
        assert response.status_code == 200
        assert [p["label"] for p in response.json()["predictions"]][0] == "seven"
