from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from .conftest import dejavu_text, paper_digit, with_exif_orientation


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_infer", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def digit_pngs(mnist_test, tmp_path_factory):
    x, y = mnist_test
    d = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in range(5):
        p = d / f"digit_{i}_{y[i]}.png"
        cv2.imwrite(str(p), paper_digit(x[i], scale=6))
        paths.append((str(p), int(y[i])))
    return paths


def test_classify_reads_photo_like_pngs(digit_pngs):
    r = cli("classify", *[p for p, _ in digit_pngs], "--json", "--top-k", "3")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["digit"] for row in rows] == [d for _, d in digit_pngs]
    assert all(len(row["top_k"]) == 3 for row in rows)


def test_classify_plain_output(digit_pngs):
    path, digit = digit_pngs[0]
    r = cli("classify", path)
    assert r.returncode == 0 and r.stdout.startswith(f"{path}: {digit}")


def test_classify_says_when_a_crop_is_not_a_digit(tmp_path, digit_pngs):
    letter = tmp_path / "letter_K.png"
    im = np.full((120, 120), 235, np.uint8)
    dejavu_text(im, "K", 30, 10, 80, font="DejaVuSerif.ttf", ink=30)
    cv2.imwrite(str(letter), im)
    path, digit = digit_pngs[0]
    r = cli("classify", str(letter), path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{letter}: not a digit") and lines[1].startswith(f"{path}: {digit}")
    rows = [json.loads(line) for line in cli("classify", "--json", str(letter), path).stdout.splitlines()]
    assert [row["is_digit"] for row in rows] == [False, True] and rows[0]["not_a_digit_score"] > 0.5


def test_info_shows_int8_io():
    r = cli("info")
    assert r.returncode == 0, r.stderr
    assert "dtype=int8" in r.stdout and "input" in r.stdout and "output" in r.stdout
    assert "CONV_2D" in r.stdout and "sha256" in r.stdout
    info = json.loads(cli("info", "--json").stdout)
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"


def test_delegates_lists_each():
    r = cli("delegates")
    assert r.returncode == 0
    assert r.stdout.split()[0] == "cpu" and "edgetpu" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("classify", "/nonexistent/x.png"), 2, "does not exist"),
        (("info", "/nonexistent/model.tflite"), 2, "does not exist"),
        (("classify", "--top-k", "0", "x.png"), 2, "--top-k"),
        (("info", "--delegate", "warp-drive"), 2, "unknown delegate"),
        (("info", "--num-threads", "0"), 2, "num_threads must be >= 1"),
        (("bogus-command",), 2, "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(args, code, message):
    r = cli(*args)
    assert r.returncode == code
    assert message in r.stderr and "Traceback" not in r.stderr


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("not an image")
    r = cli("classify", str(p))
    assert r.returncode == 2 and "not a decodable image" in r.stderr and "Traceback" not in r.stderr


def test_missing_edgetpu_exits_1_with_the_fix():
    r = subprocess.run(
        [sys.executable, "-m", "edge_infer", "info", "--delegate", "edgetpu"],
        capture_output=True,
        text=True,
        env={"EDGE_INFER_EDGETPU_LIBRARY": "libedgetpu-missing.so.1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1 and "libedgetpu1-std" in r.stderr and "Traceback" not in r.stderr


def test_classify_reads_a_sideways_phone_jpeg_and_a_transparent_png(tmp_path, mnist_test):
    """What phones and drawing apps write: pixels stored sideways with an EXIF
    orientation tag, and black ink on a transparent page."""
    x, y = mnist_test
    photo = cv2.rotate(paper_digit(x[7], scale=6), cv2.ROTATE_90_COUNTERCLOCKWISE)  # the phone's stored pixels
    sideways = tmp_path / "sideways.jpg"
    sideways.write_bytes(with_exif_orientation(cv2.imencode(".jpg", photo)[1].tobytes(), 6))
    clear = tmp_path / "clear.png"
    ink = cv2.resize(x[8], None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(clear), np.dstack([np.zeros((*ink.shape, 3), np.uint8), ink]))
    r = cli("classify", "--json", str(sideways), str(clear))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["digit"] for line in r.stdout.splitlines()] == [int(y[7]), int(y[8])]


def test_classify_roi_reads_the_digit_in_the_region(tmp_path):
    img = np.full((200, 300), 230, np.uint8)
    cv2.putText(img, "2", (20, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, 20, 8)
    cv2.putText(img, "7", (200, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, 20, 8)
    p = tmp_path / "two.png"
    cv2.imwrite(str(p), img)
    left, right = cli("classify", str(p), "--roi", "0,0,120,190"), cli("classify", str(p), "--roi", "180,40,110,140")
    assert left.returncode == 0 and ": 2 " in left.stdout
    assert right.returncode == 0 and ": 7 " in right.stdout
    bad = cli("classify", str(p), "--roi", "10,10")
    assert bad.returncode == 2 and "--roi takes X,Y,W,H" in bad.stderr
    outside = cli("classify", str(p), "--roi", "400,0,50,50")
    assert outside.returncode == 2 and "outside" in outside.stderr and "Traceback" not in outside.stderr
