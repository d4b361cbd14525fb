"""HTTP service for one or more model dirs: the web page at / (imagerec/web), GET /health,
GET /models, GET /models/{name}/card, GET /models/{name}/files/{file} (the pipeline's figures and
curves, by name only), and POST /predict (multipart field `file`, ?top_k=, ?gradcam=, ?model=)."""
import base64
import contextlib
import io
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from . import images, inference, modelcard
from .errors import ImagerecError
from .inference import Classifier

WEB_DIR = Path(__file__).parent / "web"
GRADCAM_METHOD = "hirescam"  # as the evaluate stage's gradcam.png: faithful for the CNN's flattening head
MAX_REQUEST_BYTES = 10 * 2**20
# A model sees 224x224 at most: a larger upload is refused from its header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000  # a 7,700 x 5,200 photo; Pillow's own bomb limit is 89 M
DECODE_SLOTS = 2  # images decoded at once (one per core): bounds the memory large uploads take
MAX_PENDING = 128  # /predict requests admitted at once (waiting or running); more get 503
MAX_BATCH = 32  # images run in one model call at most
BATCH_WAIT_MS = 5  # how long the first image of a batch waits for others
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


class MicroBatcher:
    """One model's calls for many concurrent requests: the first image ready opens a batch, which
    takes whatever else arrives within `wait_seconds`, up to `max_batch` images, and runs as one
    call (TF Serving's and Triton's dynamic batching, in small). On a CPU one batch of 16 costs far
    less than 16 calls of one.

    A batch waits only while images are in fact on their way: requests admitted and still
    decoding (inside `arriving`). A lone client's image runs at once instead of waiting
    `wait_seconds` for company that is not coming."""

    def __init__(self, classifier: Classifier, max_batch: int, wait_seconds: float, model_lock: threading.Lock):
        self.classifier, self.max_batch, self.wait_seconds, self.model_lock = classifier, max_batch, wait_seconds, model_lock
        self.ready: list[tuple[np.ndarray, Future]] = []
        self.on_the_way = 0  # requests admitted, their images not yet ready
        self.changed = threading.Condition()
        threading.Thread(target=self._serve, daemon=True, name=f"batcher-{classifier.dataset}").start()

    @contextlib.contextmanager
    def arriving(self):
        """Around a request's decoding: while it is inside, a batch may wait for its image. Yields
        `submit(pixels) -> Future`, the image's class probabilities to come, computed in a batch."""
        with self.changed:
            self.on_the_way += 1
        submitted = False

        def submit(pixels: np.ndarray) -> Future:
            nonlocal submitted
            answer = Future()
            with self.changed:
                self.on_the_way -= 1
                submitted = True
                self.ready.append((pixels, answer))
                self.changed.notify_all()
            return answer

        try:
            yield submit
        finally:
            if not submitted:  # a bad image: nothing is coming from this request
                with self.changed:
                    self.on_the_way -= 1
                    self.changed.notify_all()

    def _next_batch(self) -> list[tuple[np.ndarray, Future]]:
        with self.changed:
            self.changed.wait_for(lambda: self.ready)
            deadline = time.monotonic() + self.wait_seconds
            while len(self.ready) < self.max_batch and self.on_the_way:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            batch, self.ready = self.ready[:self.max_batch], self.ready[self.max_batch:]
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                with self.model_lock:
                    rows = inference.predict(self.classifier.run, np.stack([p for p, _ in batch]), len(batch))
            except BaseException as err:  # every waiting request gets the error, and the thread lives on
                for _, answer in batch:
                    answer.set_exception(err)
                continue
            for (_, answer), row in zip(batch, rows):
                answer.set_result(row)


class Served:
    """One model of the app: its name in URLs, the loaded classifier, its batcher and its
    pipeline results."""

    def __init__(self, name: str, classifier: Classifier, results: modelcard.Results, batcher: MicroBatcher):
        self.name, self.classifier, self.results, self.batcher = name, classifier, results, batcher


def load_models(model_dirs: list[Path], results_root: Path | None, fmt: str, batching: dict) -> dict[str, Served]:
    """Each model under its dataset's name (its folder's name where the card names none); a name
    taken already gets -2, -3, ... (e.g. models/mnist and exports/mnist)."""
    served = {}
    for model_dir in model_dirs:
        classifier = Classifier(model_dir)
        root = results_root if results_root is not None else modelcard.default_results_root(model_dir)
        results = modelcard.Results(classifier.dataset, root)
        if fmt != "keras":
            classifier.use(fmt, results.export_accuracy_changes())
        print(f"{model_dir}: predictions run on {classifier.format}", file=sys.stderr, flush=True)
        base = classifier.dataset if modelcard.safe_name(classifier.dataset) else Path(model_dir).resolve().name
        base = base if modelcard.safe_name(base) else "model"
        name, n = base, 1
        while name in served:
            n += 1
            name = f"{base}-{n}"
        served[name] = Served(name, classifier, results, MicroBatcher(classifier, **batching))
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
               results_root: Path | None = None, max_pending: int = MAX_PENDING, max_batch: int = MAX_BATCH,
               batch_wait_ms: float = BATCH_WAIT_MS, fmt: str = "keras") -> FastAPI:
    """The app, with the models loaded now rather than per request. Every error answer is JSON
    {"error": "..."}: a bad image or parameter 422, an unknown path or model file 404, a request
    over max_request_bytes 413."""
    if isinstance(model_dirs, (str, Path)):
        model_dirs = [model_dirs]
    # Requests run in a thread pool. Their images are decoded a few at a time, then gathered into
    # batches by each model's MicroBatcher; one model call at a time (the lock, shared with the
    # Grad-CAM heat maps) keeps Keras' per-call state simple, and on a CPU concurrent calls would
    # only compete for the same cores. Past `max_pending` requests the answer is 503.
    model_lock = threading.Lock()
    served = load_models([Path(d) for d in model_dirs], results_root, fmt,
                         {"max_batch": max_batch, "wait_seconds": batch_wait_ms / 1000, "model_lock": model_lock})
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
                "models": [{"name": s.name, "dataset": s.classifier.dataset, "format": s.classifier.format,
                            "classes": s.classifier.classes,
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
            with chosen.batcher.arriving() as submit:
                with decode_slots:
                    pixels = images.decode(file.file.read(), classifier.size, classifier.color_mode, MAX_IMAGE_PIXELS)
                answer = submit(pixels)
            ranked = classifier.top(answer.result(), top_k)
            if gradcam:  # needs the Keras model's gradients: one image at a time, on request only
                with model_lock:
                    explained = explain(classifier, pixels, ranked[0]["label"])
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
        max_pending: int = MAX_PENDING, header_seconds: float = HEADER_SECONDS, body_seconds: float = BODY_SECONDS,
        max_batch: int = MAX_BATCH, batch_wait_ms: float = BATCH_WAIT_MS, fmt: str = "auto",
        access_log: bool = False) -> None:
    import uvicorn

    # Bounded waiting: idle keep-alive connections close after 5 s, slow ones by the deadlines of
    # _slow_client_protocol, and shutdown waits at most 10 s for requests in flight. No
    # limit_concurrency: it counts idle connections too, so a few dozen idle sockets would lock
    # every client out; the app bounds its own work instead (MAX_PENDING, 503 beyond).
    app = create_app(model_dirs, results_root=results_root, max_pending=max_pending, max_batch=max_batch,
                     batch_wait_ms=batch_wait_ms, fmt=fmt)
    uvicorn.run(app, host=host, port=port,
                timeout_keep_alive=5, http=_slow_client_protocol(header_seconds, body_seconds),
                timeout_graceful_shutdown=10, access_log=access_log)
