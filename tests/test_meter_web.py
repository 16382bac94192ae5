"""The meter on `edge-infer serve --meter`: the JSON, and the page in a real browser (Debian's
Chromium driven by Playwright): ROIs over the last frame, the digit crops, the history plot, and an
ROI moved with the mouse and saved to the config file.

Run as a script to save the README's screenshot: ``python -m tests.test_meter_web docs/meter.png``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from .meter_video import make_drum_video, write_video
from .test_server_browser import CHROMIUM, CHROMIUM_ARGS, ServeProcess, _playwright

pytest.importorskip("flask", reason="the [serve] extra is not installed")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _wait_for_readings(url: str, n: int) -> dict:
    deadline = time.monotonic() + 120  # a bound for a hung server, not a timing assertion
    while True:
        data = _get(f"{url}/v1/meter")
        if len(data["history"]) >= n:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(data['history'])} readings published: {data['reading']}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def meter_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("meter")
    write_video(make_drum_video(40, hands=(30,)), d)
    server = ServeProcess("--meter", str(d / "meter.toml"))
    try:
        yield server, d
    finally:
        server.stop()


def test_meter_json(meter_server):
    server, d = meter_server
    data = _wait_for_readings(server.url, 30)
    assert data["meter"]["rois"][0] == [150, 150, 44, 64] and data["meter"]["unit"] == "m³"
    values = [h["value"] for h in data["history"]]
    assert values == sorted(values) and 1298.0 <= values[0] <= 1300.0
    with urllib.request.urlopen(f"{server.url}/v1/meter/history.csv", timeout=30) as r:
        assert r.read().decode().startswith("time,value,status,raw,confidence")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/v1/meter/crop/99.png", timeout=30)
    assert e.value.code == 404


def test_meter_page_shows_rois_crops_history_and_saves_a_moved_roi(meter_server):
    server, d = meter_server
    _wait_for_readings(server.url, 30)
    sync_playwright = _playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(f"{server.url}/meter")
        page.wait_for_function("() => document.querySelectorAll('#crops img').length === 6")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#crops img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.inner_text("#name") == "generated drum meter"
        assert page.inner_text("#value") not in ("", "–")
        # the history plot drew a line (blue pixels on the canvas)
        blue = page.evaluate(
            """() => { const c = document.getElementById('plot'), d = c.getContext('2d')
                 .getImageData(0, 0, c.width, c.height).data; let n = 0;
                 for (let i = 0; i < d.length; i += 4) if (d[i+2] > 150 && d[i] < 60) n++; return n; }"""
        )
        assert blue > 50
        # drag the first box 6 px right and 4 px down on the reference, then save
        page.wait_for_function("() => document.getElementById('editor').width === 640")
        box = page.locator("#editor").bounding_box()
        scale = box["width"] / 640
        x0, y0 = box["x"] + (150 + 20) * scale, box["y"] + (150 + 30) * scale
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 3 * scale, y0 + 2 * scale)
        page.mouse.move(x0 + 6 * scale, y0 + 4 * scale)
        page.mouse.up()
        page.click("#save")
        page.wait_for_function("() => document.getElementById('msg').textContent === 'saved'")
        browser.close()
    from edge_infer.apps.meter import load_config

    cfg = load_config(d / "meter.toml")
    assert cfg.rois[0] == (156, 154, 44, 64) and cfg.rois[1] == (204, 150, 44, 64)
    assert _get(f"{server.url}/v1/meter")["meter"]["rois"][0] == [156, 154, 44, 64]
    assert not [f for f in d.iterdir() if f.name.endswith(".tmp")]


def screenshot(out: str) -> None:
    """Saves the page of a generated meter (for the README)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        write_video(make_drum_video(120, hands=(60,)), tmp)
        server = ServeProcess("--meter", str(Path(tmp) / "meter.toml"))
        try:
            _wait_for_readings(server.url, 110)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 1300})
                page.goto(f"{server.url}/meter")
                page.wait_for_function("() => document.querySelectorAll('#crops img').length === 6")
                time.sleep(1.0)
                page.screenshot(path=out, full_page=True)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    screenshot(sys.argv[1] if len(sys.argv) > 1 else "docs/meter.png")
