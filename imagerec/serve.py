"""HTTP service for one model dir: GET /health, POST /predict (multipart field `file`, ?top_k=)."""
import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from . import images
from .cli import Classifier

MAX_REQUEST_BYTES = 10 * 2**20


class RequestSizeLimit:
    """413 for a request body over max_bytes: at once when Content-Length says so, else as soon as
    the bytes received (a chunked upload announces no size) pass the limit.

    Starlette's own limit (FastAPI's max_body_size) answers 413 in plain text, not JSON."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request larger than {self.max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"error": too_large}, status_code=413)(scope, receive, send)
        received = 0

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, too_large)  # answered by the app's error handler, as JSON
            return message

        await self.app(scope, receive_within_limit, send)


def create_app(model_dir: Path, max_request_bytes: int = MAX_REQUEST_BYTES) -> FastAPI:
    """The app, with the model loaded now rather than per request. Every error answer is JSON
    {"error": "..."}: a bad image or parameter 422, a request over max_request_bytes 413."""
    classifier = Classifier(model_dir)
    # Requests run in a thread pool; one model call at a time keeps Keras' per-call state simple,
    # and on a CPU concurrent calls would only compete for the same cores.
    model_lock = threading.Lock()
    app = FastAPI(title="imagerec")
    app.add_middleware(RequestSizeLimit, max_bytes=max_request_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": classifier.dataset, "classes": classifier.classes}

    @app.post("/predict")
    def predict(file: UploadFile = File(...), top_k: int = Query(3, ge=1)):
        try:
            pixels = classifier.decode(file.file.read())
        except images.BadImage as err:
            return JSONResponse({"error": f"{file.filename}: {err}"}, status_code=422)
        with model_lock:
            [ranked] = classifier.rank([pixels], top_k)
        return {"file": file.filename, "predictions": ranked}

    return app


def run(model_dir: Path, host: str, port: int) -> None:
    import uvicorn

    # Bounded waiting: idle keep-alive connections close after 5 s, at most 64 connections are
    # served at once (more get 503), and shutdown waits at most 10 s for requests in flight.
    uvicorn.run(create_app(model_dir), host=host, port=port, timeout_keep_alive=5, limit_concurrency=64,
                timeout_graceful_shutdown=10)


@contextlib.contextmanager
def serving(model_dir: Path, log_path: Path | None = None, start_timeout: float = 120):
    """`imagerec serve` in a child process on a free loopback port; yields its base URL once
    /health answers, and stops it on exit (for tests and benchmarks)."""
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "imagerec.cli", "serve", str(model_dir), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {server.poll()}); log: {log_path}")
            try:
                requests.get(f"{url}/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if log_path:
            log.close()
