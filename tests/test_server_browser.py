"""The headless page in a real browser: Debian's Chromium driven by Playwright, against
`edge-infer serve --camera sample` (the bundled clip) on a free loopback port.

Run as a script to save the README's screenshot:
``python -m tests.test_server_browser docs/serve.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import pytest

from .test_server import scene

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parent.parent


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; tools/setup_dev.sh does)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (apt-get install chromium; tools/setup_dev.sh does)")
    return sync_playwright


class ServeProcess:
    """`python -m edge_infer serve --port 0 ...` until stopped; ``.url`` from its first line."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "EDGE_INFER_API_KEY"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_infer", "serve", "--port", "0", "--workers", "2", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        line = self.proc.stdout.readline()
        if "listening on http://127.0.0.1:" not in line:
            self.stop()
            raise RuntimeError(f"edge-infer serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0]

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _playwright()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory, mnist_test):
    """A photo-like PNG of paper with "721" written in a row and "0" below."""
    x, y = mnist_test
    chosen = [(x[i], int(y[i])) for i in (0, 1, 2, 3)]
    path = tmp_path_factory.mktemp("upload") / "numbers.png"
    cv2.imwrite(str(path), scene(chosen))
    return path, {"".join(str(label) for _, label in chosen[:3]), str(chosen[3][1])}


def drive(page, url: str, photo: Path, *, live: bool) -> dict:
    """Opens the page, waits for live frames (if any), uploads the photo; returns what it showed."""
    page.goto(url + "/", wait_until="domcontentloaded")
    seen: dict = {"live_hidden": page.locator("#live-section").is_hidden()}
    if live:
        page.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=30_000)
        seen["natural_width"] = page.evaluate("() => document.getElementById('live').naturalWidth")
        page.wait_for_function("() => Number(document.getElementById('live-stats').dataset.frames) > 0", timeout=30_000)
        f0 = int(page.locator("#live-stats").get_attribute("data-frames"))
        shot0 = page.locator("#live").screenshot()
        time.sleep(1.5)
        page.wait_for_function(
            f"() => Number(document.getElementById('live-stats').dataset.frames) > {f0}", timeout=30_000
        )
        seen["frames"] = (f0, int(page.locator("#live-stats").get_attribute("data-frames")))
        seen["shots_differ"] = shot0 != page.locator("#live").screenshot()
        seen["stats_text"] = page.locator("#live-stats").inner_text()
    page.set_input_files("#file", str(photo))
    page.wait_for_function(
        "() => document.getElementById('status').dataset.done === '1' || "
        "document.getElementById('status').className === 'error'",
        timeout=30_000,
    )
    seen["status"] = page.locator("#status").inner_text()
    seen["numbers"] = set(page.locator("#result-numbers").inner_text().split())
    seen["digit_rows"] = page.locator("#result-digits tr").count() - 1
    return seen


def test_live_page_streams_the_sample_clip_and_reads_an_upload(browser, photo):
    path, numbers = photo
    server = ServeProcess("--camera", "sample")
    page = browser.new_page(viewport={"width": 1000, "height": 1200})
    try:
        seen = drive(page, server.url, path, live=True)
        t0 = time.monotonic()
        assert server.stop() == 0  # SIGTERM while the page still watches the stream: a clean, prompt stop
        assert time.monotonic() - t0 < 10
    finally:
        server.stop()
        page.close()
    assert not seen["live_hidden"] and seen["natural_width"] == 640
    assert seen["frames"][1] > seen["frames"][0] and seen["shots_differ"], seen
    assert "FPS" in seen["stats_text"]
    assert seen["numbers"] == numbers, seen
    assert seen["digit_rows"] == 4


def test_page_without_camera_is_the_upload_form_only(browser, photo):
    path, numbers = photo
    server = ServeProcess()
    try:
        page = browser.new_page()
        seen = drive(page, server.url, path, live=False)
        page.close()
    finally:
        server.stop()
    assert seen["live_hidden"] and seen["numbers"] == numbers, seen


def save_screenshot(out: Path) -> None:
    """The README's picture: the live page on the sample clip, after reading an uploaded photo."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    from convert.data import load_mnist

    data = load_mnist(download=False)
    tmp = Path(tempfile.mkdtemp())
    photo = tmp / "numbers.png"
    cv2.imwrite(str(photo), scene([(data.x_test[i], int(data.y_test[i])) for i in (0, 1, 2, 3)]))
    server = ServeProcess("--camera", "sample")
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 980, "height": 1180})
            seen = drive(page, server.url, photo, live=True)
            time.sleep(2)  # a settled FPS figure
            page.screenshot(path=str(out), full_page=True)
            b.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(out, seen["numbers"], np.asarray(cv2.imread(str(out))).shape)


if __name__ == "__main__":
    save_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/serve.png"))
