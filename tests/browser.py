"""Headless Chromium for the page's browser tests and docs/make_screenshot.py: Debian's `chromium`
and `chromium-driver` packages driven by Selenium, offline (no Selenium Manager download, no
Google services), in a fresh profile.
"""
import contextlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

# What works in a container as root, with no GPU and no network beyond loopback.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1"]


def missing() -> str | None:
    """Why the headless browser cannot run here, or None where it can."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        return ("no Chromium here (`chromium` and `chromedriver` not both on PATH): "
                "apt-get install chromium chromium-driver, as .ci/run does")
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A Selenium WebDriver for headless Chromium, closed (with its profile removed) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing()
    if reason:
        raise RuntimeError(reason)
    profile = Path(tempfile.mkdtemp(prefix="imagerec-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Driving the page (imagerec/web): the same steps for the tests and the screenshots.

def open_page(driver, base_url: str, model: str | None = None, timeout: float = 30) -> None:
    """Open the page and wait until it has listed the models (and picked `model`, if given)."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(f"{base_url}/")
    WebDriverWait(driver, timeout).until(lambda d: d.find_elements("css selector", "#model option"))
    if model is not None:
        Select(driver.find_element("id", "model")).select_by_value(model)


def upload(driver, image: Path, timeout: float = 60) -> str:
    """Choose `image` in the page's file input; wait for the answer: "done" (predictions and heat
    map shown), "done-without-heatmap", or "error" (the page's error message shown)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.getElementById('error').hidden = true;"
                          "document.getElementById('result').dataset.state = 'sent';")
    driver.find_element("id", "file").send_keys(str(Path(image).resolve()))

    def outcome(d):
        if d.find_element("id", "error").is_displayed():
            return "error"
        state = d.find_element("id", "result").get_attribute("data-state")
        return state if state and state.startswith("done") else False

    return WebDriverWait(driver, timeout).until(outcome)


def open_card(driver, timeout: float = 30) -> None:
    """Switch to the model card view; wait until its charts are drawn and its figures loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("id", "tab-card").click()
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "const card = document.getElementById('card');"
        "return card.dataset.model && !card.querySelector('.busy')"
        " && [...card.querySelectorAll('img')].every(img => img.complete);"))


def screenshot_whole_page(driver, path: Path, width: int = 1280) -> Path:
    """A PNG of the whole page: the viewport set to the page's height, then back."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": min(height, 8000), "deviceScaleFactor": 1, "mobile": False})
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return Path(path)
