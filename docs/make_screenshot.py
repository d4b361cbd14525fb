"""Screenshots of `imagerec serve`'s page for the README: serve the given model dirs on loopback,
open the page in headless Chromium, upload an image, wait for the prediction and its heat map, and
save the page (docs/page.png) and the model's card (docs/page-card.png).

    python docs/make_screenshot.py models/mnist models/cifar10 models/cats_vs_dogs \\
        --model cats_vs_dogs --image path/to/a/cat.jpg

Needs Debian's chromium and chromium-driver, and selenium (pip install -e '.[test]').
"""
import argparse
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))  # the browser and server helpers: test tooling, not the package
import browser  # noqa: E402
from serving import serving  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    parser.add_argument("--image", type=Path, required=True, help="the image to upload")
    parser.add_argument("--model", help="the model to pick on the page (default: the first)")
    parser.add_argument("--results", type=Path, help="as `imagerec serve --results` (default: each model dir's grandparent)")
    parser.add_argument("--out", type=Path, default=DOCS / "page.png", help="default: docs/page.png")
    parser.add_argument("--card-out", type=Path, default=DOCS / "page-card.png", help="default: docs/page-card.png")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    if (reason := browser.missing()):
        sys.exit(f"error: {reason}")
    if not args.image.is_file():
        sys.exit(f"error: {args.image}: no such file")

    with tempfile.TemporaryDirectory() as tmp, \
            serving(args.model_dirs, log_path=Path(tmp) / "server.log", results_root=args.results) as url, \
            browser.chromium(args.width, 900) as driver:
        browser.open_page(driver, url, args.model)
        outcome = browser.upload(driver, args.image)
        if outcome != "done":
            message = driver.find_element("id", "error").text or driver.find_element("id", "heatmap-caption").text
            sys.exit(f"error: the page shows no prediction with a heat map for {args.image} ({outcome}): {message}")
        print(driver.find_element("id", "status").text)
        print(browser.screenshot_whole_page(driver, args.out, args.width))
        browser.open_card(driver)
        print(browser.screenshot_whole_page(driver, args.card_out, args.width))


if __name__ == "__main__":
    main()
