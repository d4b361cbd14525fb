"""The `imagerec` command: label image files with a trained model dir, serve it over HTTP, or
report how the results of this revision differ from another (for a pull request)."""
import argparse
import json
import os
import sys
import time
from pathlib import Path


from . import images
from .errors import ImagerecError, run_stage

# inference.FORMATS, written out: importing inference imports TensorFlow, which --help need not wait for.
FORMAT_CHOICES = ("auto", "keras", "saved_model", "tflite_float32", "tflite_dynamic_range", "tflite_int8")
FORMAT_HELP = ("what runs the model: auto (default) times the formats in MODEL_DIR (exports/X holds the exported "
               "ones) and takes the fastest whose test accuracy, as the export stage measured it, is at most "
               "0.2 points below the Keras model's; or one format by name")


def image_files(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder stands for its image files (by suffix), sorted, not recursing.

    A folder without any stays in the list, so that reading it reports it like a bad file.
    """
    files = []
    for path in inputs:
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in images.IMAGE_SUFFIXES) if path.is_dir() else []
        files.extend(found or [path])
    return files


def read_image_file(path: Path) -> bytes:
    """The file's bytes, but at most one more than images.decode accepts: a huge file is refused
    without first filling memory."""
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # opening a FIFO would wait forever
            raise ImagerecError("not a regular file (a FIFO, socket or device)")
        with open(path, "rb") as f:
            return f.read(images.MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ImagerecError("no such file") from None
    except IsADirectoryError:
        raise ImagerecError(f"a folder with no image files ({', '.join(sorted(images.IMAGE_SUFFIXES))})") from None
    except OSError as err:
        raise ImagerecError(f"cannot read: {err.strerror}") from None


def decoded(classifier, path: Path):
    """(path, pixels) or (path, the error's message)."""
    try:
        return path, classifier.decode(read_image_file(path))
    except ImagerecError as err:
        return path, str(err)


def predict_command(args: argparse.Namespace) -> None:
    """Streams the files through the model in batches: the next batch is decoded (two threads)
    while the model runs on this one, so memory holds two batches whatever the folder's size."""
    if args.top_k < 1:
        raise ImagerecError(f"--top-k must be at least 1, not {args.top_k}")
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from .inference import Classifier  # imports TensorFlow (seconds): usage errors need not wait for it

    classifier = Classifier(args.model_dir)
    if args.format != "keras":
        from . import modelcard

        results = modelcard.Results(classifier.dataset, modelcard.default_results_root(args.model_dir))
        classifier.use(args.format, results.export_accuracy_changes())
    files, failed, done = image_files(args.images), 0, 0
    batches = [files[start:start + classifier.BATCH_SIZE] for start in range(0, len(files), classifier.BATCH_SIZE)]
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool, tqdm(total=len(files), unit="img", file=sys.stderr, leave=False,
                                             disable=not sys.stderr.isatty()) as progress:
        ahead = pool.map(lambda path: decoded(classifier, path), batches[0]) if batches else iter(())
        for index in range(len(batches)):
            batch = list(ahead)
            if index + 1 < len(batches):
                ahead = pool.map(lambda path: decoded(classifier, path), batches[index + 1])
            good = [(path, pixels) for path, pixels in batch if not isinstance(pixels, str)]
            for path, message in batch:
                if isinstance(message, str):
                    progress.write(f"error: {path}: {message}", file=sys.stderr)
                    failed += 1
            ranked = classifier.rank([pixels for _, pixels in good], args.top_k) if good else []
            for (path, _), top in zip(good, ranked):
                if args.json:  # JSON Lines: one object per image, as soon as it is known
                    print(json.dumps({"file": str(path), "predictions": top}), flush=True)
                else:
                    print(f"{path}: " + ", ".join(f"{p['label']} {p['probability']:.3f}" for p in top), flush=True)
            done += len(batch)
            progress.update(len(batch))
    if len(batches) > 1:  # a folder's worth: how fast it went
        seconds = time.monotonic() - started
        print(f"{done} images in {seconds:.1f} s ({done / seconds:.1f} images/s), {failed} unreadable", file=sys.stderr)
    if failed:
        sys.exit(2)


def serve_command(args: argparse.Namespace) -> None:
    from . import serve

    limits = {"fmt": args.format, "max_pending": args.max_pending, "header_seconds": args.header_seconds, "body_seconds": args.body_seconds,
              "max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms}
    for name, value in limits.items():
        if isinstance(value, (int, float)) and (value < 0 or value == 0 and name != "batch_wait_ms"):
            raise ImagerecError(f"--{name.replace('_', '-')}: must be above 0, not {value}")
    serve.run(args.model_dirs, args.host, args.port, args.results, access_log=args.access_log,
              **{name: value for name, value in limits.items() if value is not None})


def report_command(args: argparse.Namespace) -> None:
    from . import report

    print(report.write(args.base, args.out))


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes end like every other error: one `error: ...` line on stderr, exit code 2."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    top = OneLineErrorParser(prog="imagerec", description=__doc__)
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict", help="print the most probable labels of image files",
        description="Print the top-k labels and probabilities of each image, as `FILE: label 0.973, ...` lines "
                    "or (--json) JSON Lines, one {file, predictions: [{label, probability}]} per image. "
                    "Images are read in batches as they go (a folder of any size), with a progress bar on a "
                    "terminal and the images/s at the end of more than one batch. "
                    "A bad image (missing, not an image, truncated, too large) does not stop the others: "
                    "it gets an `error: FILE: reason` line on stderr, the good images are still predicted, "
                    "and the exit code is 2. A bad model directory or option stops everything (exit code 2).")
    predict.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="a trained model: model.keras + model.json")
    predict.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                         help="image files, or folders standing for their image files (sorted, not recursive)")
    predict.add_argument("--top-k", type=int, default=3, metavar="K", help="labels shown per image (default: 3)")
    predict.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help=FORMAT_HELP)
    predict.add_argument("--json", action="store_true", help="print one JSON object per line (JSON Lines) instead of text")
    predict.set_defaults(command=predict_command)

    serve = commands.add_parser(
        "serve", help="serve models over HTTP, with a web page to try them",
        description="Serve one or more models over HTTP: a web page at / (pick a model, upload or draw an image, "
                    "see the top labels and the Grad-CAM heat map, and each model's card), GET /health, GET /models, "
                    "and POST /predict with a multipart file field `file` and optional query parameters top_k, "
                    "gradcam=true and (with several models) model=NAME. The models are loaded once, at start-up.")
    serve.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR",
                       help="a trained model: model.keras + model.json (models/mnist, exports/cifar10, ...)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    serve.add_argument("--results", type=Path, metavar="DIR",
                       help="the repository whose metrics/, plots/ and params.yaml the model cards show "
                            "(default: each MODEL_DIR's grandparent, e.g. . for models/mnist)")
    serve.add_argument("--format", default="auto", choices=FORMAT_CHOICES, help=FORMAT_HELP)
    serve.add_argument("--max-batch", type=int, metavar="N",
                       help="concurrent predictions run as one batch of at most N images (default: 32)")
    serve.add_argument("--batch-wait-ms", type=float, metavar="MS",
                       help="how long the first image of a batch waits for others to join it (default: 5)")
    serve.add_argument("--max-pending", type=int, metavar="N",
                       help="predictions admitted at once, waiting or running; more get 503 with Retry-After (default: 128)")
    serve.add_argument("--header-seconds", type=float, metavar="SECONDS",
                       help="a connection that has not sent a request's headers by then is closed (default: 10)")
    serve.add_argument("--body-seconds", type=float, metavar="SECONDS",
                       help="... nor its body within this of the headers (default: 30)")
    serve.add_argument("--access-log", action="store_true",
                       help="log a line per request to stderr (off by default: it was 7%% of the server's CPU "
                            "per MNIST prediction)")
    serve.set_defaults(command=serve_command)

    report = commands.add_parser(
        "report", help="compare the workspace's metrics, params and plots with a base revision",
        description="Write OUT/report.md: per dataset, the metrics that changed between BASE and the workspace "
                    "(both values and the change), the params diff, and the plots of both revisions as PNGs under "
                    "OUT/images (Vega-Lite plots rendered offline). Runs `dvc metrics/params/plots diff BASE` in the "
                    "current directory, which must be a git + DVC repository; nothing is re-run.")
    report.add_argument("--base", required=True, help="the revision to compare with: a branch, tag or commit (e.g. main)")
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    report.set_defaults(command=report_command)
    return top


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr pointed at /dev/null: TF 2.21's C++ start-up
    notices (oneDNN, absl) ignore TF_CPP_MIN_LOG_LEVEL and would bury the one-line errors.
    An import that fails still raises, and its traceback is printed once stderr is back."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command is not report_command:  # the report only runs dvc and git
        import_tensorflow_quietly()
    run_stage(lambda: args.command(args))


if __name__ == "__main__":
    main()
