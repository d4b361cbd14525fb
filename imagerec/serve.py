"""HTTP service for one or more model dirs: the web page at / (imagerec/web), GET /health,
GET /models, GET /models/{name}/card, GET /models/{name}/files/{file} (the pipeline's figures and
curves, by name only), and POST /predict (multipart field `file`, ?top_k=, ?gradcam=, ?model=)."""
import base64
import contextlib
import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from . import images, modelcard
from .errors import ImagerecError
from .inference import Classifier

WEB_DIR = Path(__file__).parent / "web"
GRADCAM_METHOD = "hirescam"  # as the evaluate stage's gradcam.png: faithful for the CNN's flattening head
MAX_REQUEST_BYTES = 10 * 2**20
# A model sees 224x224 at most: a larger upload is refused from its header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000  # a 7,700 x 5,200 photo; Pillow's own bomb limit is 89 M
DECODE_SLOTS = 2  # images decoded at once (one per core): bounds the memory large uploads take
MAX_PENDING = 128  # /predict requests admitted at once (waiting or running); more get 503
RETRY_AFTER_SECONDS = 1
HEADER_SECONDS = 10  # a connection must deliver a request's headers within this
BODY_SECONDS = 30  # ... and its body within this of the headers


def _slow_client_protocol(header_seconds: float, body_seconds: float):
    """uvicorn's h11 protocol with deadlines that a slow client cannot stretch by sending a byte
    now and then: the request's headers within `header_seconds` of connecting (or of the previous
    answer), its body within `body_seconds` of the headers; else the connection is closed. uvicorn
    has only an idle keep-alive timeout, which any byte resets."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class SlowClientTimeouts(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._deadline = None
            self._arm(header_seconds)

        def _arm(self, seconds: float) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _expire(self) -> None:
            # IDLE: the headers have not all come; SEND_BODY: the body has not. DONE: the
            # request is in and the app is answering it, however long that takes.
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's headers are complete
                self._arm(body_seconds)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm(header_seconds)

        def connection_lost(self, exc):
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return SlowClientTimeouts


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


class Served:
    """One model of the app: its name in URLs, the loaded classifier and its pipeline results."""

    def __init__(self, name: str, classifier: Classifier, results: modelcard.Results):
        self.name, self.classifier, self.results = name, classifier, results


def load_models(model_dirs: list[Path], results_root: Path | None = None) -> dict[str, Served]:
    """Each model under its dataset's name (its folder's name where the card names none); a name
    taken already gets -2, -3, ... (e.g. models/mnist and exports/mnist)."""
    served = {}
    for model_dir in model_dirs:
        classifier = Classifier(model_dir)
        base = classifier.dataset if modelcard.safe_name(classifier.dataset) else Path(model_dir).resolve().name
        base = base if modelcard.safe_name(base) else "model"
        name, n = base, 1
        while name in served:
            n += 1
            name = f"{base}-{n}"
        root = results_root if results_root is not None else modelcard.default_results_root(model_dir)
        served[name] = Served(name, classifier, modelcard.Results(classifier.dataset, root))
    return served


def heatmap_png(heat: np.ndarray) -> str:
    """A heat map (H, W) in 0..1 as a data: URL of an opaque PNG in the jet colour map (as gradcam.png)."""
    from matplotlib import colormaps
    from PIL import Image

    rgb = (colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def create_app(model_dirs: Path | list[Path], max_request_bytes: int = MAX_REQUEST_BYTES,
               results_root: Path | None = None, max_pending: int = MAX_PENDING) -> FastAPI:
    """The app, with the models loaded now rather than per request. Every error answer is JSON
    {"error": "..."}: a bad image or parameter 422, an unknown path or model file 404, a request
    over max_request_bytes 413."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    served = load_models([Path(d) for d in model_dirs], results_root)
    # Requests run in a thread pool; one model call at a time keeps Keras' per-call state simple,
    # and on a CPU concurrent calls would only compete for the same cores. Decoding runs outside
    # the model's lock, a few images at a time; past MAX_PENDING requests the answer is 503.
    model_lock = threading.Lock()
    decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
    pending = threading.BoundedSemaphore(max_pending)
    app = FastAPI(title="imagerec")
    app.add_middleware(RequestSizeLimit, max_bytes=max_request_bytes)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    def choose(name: str | None, status_code: int = 422) -> Served:
        if name is None and len(served) == 1:
            return next(iter(served.values()))
        if name in served:
            return served[name]
        known = ", ".join(served)
        raise HTTPException(status_code, f"model: no model {name!r} (serving: {known})" if name is not None
                            else f"model: required when serving several models (one of: {known})")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/health")
    def health() -> dict:
        if len(served) == 1:
            [one] = served.values()
            return {"status": "ok", "model": one.classifier.dataset, "classes": one.classifier.classes}
        return {"status": "ok", "models": [{"model": s.name, "classes": s.classifier.classes} for s in served.values()]}

    @app.get("/models")
    def models() -> dict:
        return {"max_request_bytes": max_request_bytes,
                "models": [{"name": s.name, "dataset": s.classifier.dataset, "classes": s.classifier.classes,
                            "input_size": s.classifier.size, "color_mode": s.classifier.color_mode}
                           for s in served.values()]}

    @app.get("/models/{name}/card")
    def card(name: str) -> dict:
        chosen = choose(name, 404)
        return modelcard.describe(chosen.name, chosen.classifier.card, chosen.results,
                                  lambda key: f"/models/{chosen.name}/files/{key}")

    @app.get("/models/{name}/files/{file}")
    def model_file(name: str, file: str) -> FileResponse:
        path = choose(name, 404).results.file(file)
        if path is None:
            raise HTTPException(404, f"{file}: not available")
        media_type = "text/tab-separated-values" if path.suffix == ".tsv" else None
        return FileResponse(path, media_type=media_type)

    @app.post("/predict")
    def predict(file: UploadFile = File(...), top_k: int = Query(3, ge=1), model: str | None = Query(None),
                gradcam: bool = Query(False)):
        chosen = choose(model)
        classifier = chosen.classifier
        if not pending.acquire(blocking=False):
            return JSONResponse({"error": f"busy: {max_pending} requests in progress; try again shortly"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        try:
            with decode_slots:
                pixels = images.decode(file.file.read(), classifier.size, classifier.color_mode, MAX_IMAGE_PIXELS)
            with model_lock:
                [ranked] = classifier.rank([pixels], top_k)
                explained = explain(classifier, pixels, ranked[0]["label"]) if gradcam else None
        except images.BadImage as err:
            return JSONResponse({"error": f"{file.filename}: {err}"}, status_code=422)
        finally:
            pending.release()
        answer = {"file": file.filename, "model": chosen.name, "predictions": ranked}
        if gradcam:
            answer["gradcam"] = explained
        return answer

    return app


def explain(classifier: Classifier, pixels: np.ndarray, label: str) -> dict:
    """The heat map of `label` for one decoded image, or why there is none."""
    from . import gradcam

    try:
        [heat] = gradcam.heatmaps(classifier.model, pixels[None], np.array([classifier.classes.index(label)]),
                                  method=GRADCAM_METHOD)
    except ImagerecError as err:
        return {"label": label, "error": str(err)}
    return {"label": label, "method": GRADCAM_METHOD, "size": list(heat.shape), "png": heatmap_png(heat)}


def run(model_dirs: Path | list[Path], host: str, port: int, results_root: Path | None = None,
        max_pending: int = MAX_PENDING, header_seconds: float = HEADER_SECONDS, body_seconds: float = BODY_SECONDS) -> None:
    import uvicorn

    # Bounded waiting: idle keep-alive connections close after 5 s, slow ones by the deadlines of
    # _slow_client_protocol, and shutdown waits at most 10 s for requests in flight. No
    # limit_concurrency: it counts idle connections too, so a few dozen idle sockets would lock
    # every client out; the app bounds its own work instead (MAX_PENDING, 503 beyond).
    uvicorn.run(create_app(model_dirs, results_root=results_root, max_pending=max_pending), host=host, port=port,
                timeout_keep_alive=5, http=_slow_client_protocol(header_seconds, body_seconds),
                timeout_graceful_shutdown=10)


@contextlib.contextmanager
def serving(model_dirs: Path | list[Path], log_path: Path | None = None, start_timeout: float = 120,
            results_root: Path | None = None, options: tuple[str, ...] = ()):
    """`imagerec serve` in a child process on a free loopback port; yields its base URL once
    /health answers, and stops it on exit (for tests, benchmarks and docs/make_screenshot.py)."""
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    command = [sys.executable, "-m", "imagerec.cli", "serve", *map(str, model_dirs), "--port", str(port)]
    if results_root is not None:
        command += ["--results", str(results_root)]
    command += list(options)  # more `imagerec serve` flags
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
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
