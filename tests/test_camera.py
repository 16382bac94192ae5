"""edge_infer.apps.camera: the demo app on the sample clip, videos, images, folders and failing cameras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_infer.apps import camera
from edge_infer.apps.cli import main

from .scenes import make_scene

cv2 = pytest.importorskip("cv2")


def _run(capsys, *argv: str) -> tuple[int, list[dict], str]:
    rc = main(["camera", *argv])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rc, lines, err


@pytest.fixture()
def no_camera(monkeypatch):
    monkeypatch.setattr(camera, "_camera_present", lambda index: False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_sample_clip_is_small_and_decodes():
    clip = camera.sample_clip_path()
    assert clip.is_file() and clip.stat().st_size < 350_000
    cap = cv2.VideoCapture(str(clip))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n >= 40 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 640


def test_main_job_without_camera_or_display_writes_the_annotated_video(capsys, tmp_path, no_camera):
    out = tmp_path / "out" / "demo.mp4"
    rc, lines, err = _run(capsys, "--max-frames", "60", "--save", str(out), "--stats")
    assert rc == 0, err
    assert "no display" in err and "sample clip" in err and "wrote 60 annotated frames" in err
    assert "segment" in err and "infer" in err and "draw" in err and "capture" in err  # --stats
    assert len(lines) == 60  # it fell back to headless: a JSON line per frame
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 60 and frames[0].shape == (480, 640, 3)
    # the clip really is read: most frames have digits and some have multi-digit numbers
    assert sum(bool(line["digits"]) for line in lines) >= 50
    assert any(len(n["value"]) >= 2 for line in lines for n in line["numbers"])
    first = lines[0]
    assert set(first) == {"frame", "digits", "numbers", "fps", "ms"}
    assert set(first["digits"][0]) == {"box", "digit", "score"}


def test_fast_pipeline_reads_the_sample_clip(capsys, no_camera):
    rc, lines, err = _run(capsys, "--max-frames", "20", "--headless", "--fast")
    assert rc == 0, err
    assert len(lines) == 20 and sum(bool(line["digits"]) for line in lines) >= 15


def test_headless_sample_plays_once_without_max_frames(capsys, no_camera):
    rc, lines, _ = _run(capsys, "--source", "sample", "--headless")
    n = int(cv2.VideoCapture(str(camera.sample_clip_path())).get(cv2.CAP_PROP_FRAME_COUNT))
    assert rc == 0 and len(lines) == n


def test_image_and_folder_sources_and_png_output(capsys, tmp_path, mnist_test):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"page{i}.png"), make_scene(30_000 + i, mnist_test).frame)
    (src / "notes.txt").write_text("not an image")
    rc, lines, err = _run(capsys, "--source", str(src), "--headless", "--save", str(tmp_path / "annotated"))
    assert rc == 0, err
    assert len(lines) == 3 and all(line["digits"] for line in lines)
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    one = tmp_path / "one.png"
    rc, lines, err = _run(capsys, "--source", str(src / "page0.png"), "--headless", "--save", str(one))
    assert rc == 0 and len(lines) == 1 and cv2.imread(str(one)).shape == (480, 640, 3)


def test_missing_source_and_bad_arguments_are_usage_errors(capsys, tmp_path):
    rc, _, err = _run(capsys, "--source", str(tmp_path / "nope.mp4"), "--headless")
    assert rc == 2 and "no such file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _run(capsys, "--source", str(empty), "--headless")
    assert rc == 2 and "no images" in err
    rc, _, err = _run(capsys, "--max-frames", "0", "--headless")
    assert rc == 2 and "--max-frames must be >= 1" in err
    rc, _, err = _run(capsys, "--min-score", "1.5", "--headless")
    assert rc == 2 and "--min-score" in err
    rc, _, err = _run(capsys, "--max-height", "0", "--headless")
    assert rc == 2 and "--max-height must be >= 1" in err


def test_a_close_up_of_one_digit_needs_max_height(capsys, tmp_path, clear_digits):
    """A digit 80% of the photo's height is over the default limit (half the frame);
    --max-height lets it in, and a sideways phone JPEG is read upright."""
    from .conftest import with_exif_orientation

    ink = cv2.resize(clear_digits[4], (384, 384), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    page = np.full((480, 640), 215, np.float32)
    page[48:432, 128:512] = page[48:432, 128:512] * (1 - ink) + 40 * ink
    photo = cv2.cvtColor(page.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    path = tmp_path / "closeup.jpg"
    path.write_bytes(
        with_exif_orientation(cv2.imencode(".jpg", cv2.rotate(photo, cv2.ROTATE_90_CLOCKWISE))[1].tobytes(), 8)
    )
    rc, lines, err = _run(capsys, "--source", str(path), "--headless")
    assert rc == 0, err
    assert lines[0]["digits"] == []
    rc, lines, err = _run(capsys, "--source", str(path), "--headless", "--max-height", "480")
    assert rc == 0, err
    assert [d["digit"] for d in lines[0]["digits"]] == [4]


def test_camera_that_does_not_open_exits_1(capsys, no_camera):
    rc, _, err = _run(capsys, "--source", "7", "--retries", "1", "--headless")
    assert rc == 1 and "camera 7 did not open after 2 attempts" in err


def test_picamera_without_picamera2_says_what_to_do(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "picamera2":
            raise ImportError("No module named 'picamera2'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    rc, _, err = _run(capsys, "--source", "picamera", "--headless")
    assert rc == 1 and "Picamera2" in err and "python3-picamera2" in err


def test_camera_that_stops_giving_frames_exits_1(capsys, monkeypatch, mnist_test):
    frame = make_scene(30_010, mnist_test).frame
    feed = iter([frame, frame, frame])

    def fake_open(spec, **kw):
        return camera.FrameSource("camera 0", True, 0.0, lambda: next(feed, None), None)

    monkeypatch.setattr(camera, "open_source", fake_open)
    monkeypatch.setattr(camera.time, "sleep", lambda s: None)
    rc, lines, err = _run(capsys, "--source", "0", "--headless", "--retries", "2")
    assert rc == 1 and len(lines) == 3
    assert "camera 0 stopped giving frames after 3 frames (2 retries)" in err


def test_annotate_draws_on_a_copy(mnist_test):
    from edge_infer import Detection
    from edge_infer.detect import group_numbers

    frame = make_scene(30_020, mnist_test).frame
    dets = [Detection((100, 100, 30, 40), 4, 0.99), Detection((135, 100, 30, 40), 2, 0.97)]
    out = camera.annotate(frame, dets, group_numbers(dets), header="12.0 FPS | cpu")
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    assert camera.annotate(frame[:, :, 0], dets, []).shape == frame.shape  # gray in, BGR out
