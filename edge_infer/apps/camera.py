"""The camera demo: read digits and numbers live from a camera, a video, images or the sample clip.

``edge-infer camera`` (and ``demos/camera_demo.py``) opens a source, finds the
digits in every frame (:func:`edge_infer.detect.detect`, one model invoke per
frame), groups them into numbers and draws boxes, digits, scores, numbers, a
rolling FPS and the delegate on the frame. It shows the result in a window, or
with ``--headless`` prints one JSON line per frame; ``--save`` writes an
annotated video (``.mp4``/``.avi``) or PNGs. ``--stats`` prints the time per
stage (capture, segmentation, crops, inference, drawing) after a warm-up.

Sources (``--source``): a camera index (``0``), a video file, an image, a folder
of images, or ``picamera`` (Picamera2 on a Raspberry Pi's libcamera stack).
With no ``--source`` it tries camera 0 and falls back to the bundled sample clip
(a handheld pan over a page of handwritten and printed numbers), saying so.

Exit codes: 0 done; 1 the camera did not open or stopped giving frames (after
``--retries``), or the display/writer failed; 2 bad arguments or input.

OpenCV is needed (``pip install 'edge-infer[camera]'``) and imported on use.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import SourceError

__all__ = ["FrameSource", "add_arguments", "annotate", "open_source", "run", "sample_clip_path"]

log = logging.getLogger(__name__)

SAMPLE_CLIP = "sample_clip.mp4"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
_VIDEO_EXTS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


def sample_clip_path() -> Path:
    """The bundled sample clip (a handheld pan over a page of numbers, 640x480)."""
    return Path(str(resources.files("edge_infer") / "data" / SAMPLE_CLIP))


# --------------------------------------------------------------------------- sources


@dataclass
class FrameSource:
    """Frames from somewhere: ``read()`` gives a uint8 BGR frame or None at the end.

    Attributes:
        name: What it reads, for messages.
        live: A camera (a missing frame is an error to retry), not a file.
        fps: Frames per second when known (videos), else 0.
    """

    name: str
    live: bool
    fps: float = 0.0
    _next: Any = field(default=None, repr=False)
    _close: Any = field(default=None, repr=False)

    def read(self) -> np.ndarray | None:
        """The next frame, or None when there is none (end of file, or a camera hiccup)."""
        return self._next()

    def close(self) -> None:
        """Releases the device or file; safe to call twice."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet_cv2() -> Any:
    import cv2

    try:  # OpenCV's own warnings (a missing /dev/video0...) would drown our messages
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass
    return cv2


def _capture(
    target: int | str, name: str, *, live: bool, loop: bool, width: int | None, height: int | None
) -> FrameSource:
    cv2 = _quiet_cv2()
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open {name}")
    if live and width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if live and height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read() -> np.ndarray | None:
        ok, frame = cap.read()
        if not ok and loop:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = cap.read()
        return frame if ok else None

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return FrameSource(name, live, fps if 0 < fps < 240 else 0.0, read, cap.release)


def _images(paths: list[Path], name: str) -> FrameSource:
    from ..image.io import read_image

    it: Iterator[Path] = iter(paths)

    def read() -> np.ndarray | None:
        for p in it:
            return read_image(p)  # upright, opaque
        return None

    return FrameSource(name, False, 0.0, read, None)


def _picamera(width: int | None, height: int | None) -> FrameSource:
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ImportError as e:
        raise SourceError(
            "--source picamera needs Picamera2, which is not importable here: on Raspberry Pi OS "
            "`sudo apt install python3-picamera2` and make the venv with --system-site-packages "
            "(or use --source 0 for a USB camera)"
        ) from e
    try:
        cam = Picamera2()
        # "RGB888" is stored B, G, R in memory: the order OpenCV expects.
        cam.configure(cam.create_video_configuration(main={"size": (width or 640, height or 480), "format": "RGB888"}))
        cam.start()
    except Exception as e:  # libcamera raises many types (no camera, busy...)
        raise SourceError(f"Picamera2 could not start the camera: {e}") from e

    def close() -> None:
        cam.stop()
        cam.close()

    return FrameSource("picamera", True, 0.0, lambda: np.ascontiguousarray(cam.capture_array("main")), close)


def open_source(
    spec: str | int | None,
    *,
    width: int | None = None,
    height: int | None = None,
    retries: int = 3,
    retry_delay: float = 0.5,
    loop_sample: bool = True,
) -> FrameSource:
    """Opens a frame source (see the module docstring for ``spec``).

    Args:
        spec: Camera index, ``"picamera"``, a video/image file, a folder of images,
            ``"sample"``, or None for camera 0 else the sample clip.
        width, height: Capture size asked of a camera (files keep their size).
        retries: Further attempts to open a camera before giving up.
        retry_delay: Seconds between attempts.
        loop_sample: Play the sample clip round and round (else once).

    Raises:
        SourceError: The camera does not open.
        FileNotFoundError: No such file or folder.
        ValueError: A folder without images, or a file that is not one.
    """
    if spec is None:
        if _camera_present(0):
            try:
                return open_source(0, width=width, height=height, retries=0, loop_sample=loop_sample)
            except SourceError:
                pass
        log.warning("no camera opened; playing the bundled sample clip (%s)", SAMPLE_CLIP)
        spec = "sample"
    if spec == "sample":
        clip = sample_clip_path()
        if not clip.is_file():
            raise FileNotFoundError(f"the sample clip {clip} is missing; reinstall edge-infer or pass --source")
        return _capture(str(clip), f"sample clip {clip.name}", live=False, loop=loop_sample, width=None, height=None)
    if spec == "picamera":
        return _picamera(width, height)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        for attempt in range(retries + 1):
            try:
                return _capture(index, f"camera {index}", live=True, loop=False, width=width, height=height)
            except SourceError:
                if attempt < retries:
                    log.info("camera %d did not open, retrying (%d/%d)", index, attempt + 1, retries)
                    time.sleep(retry_delay)
        hint = "" if _camera_present(index) else f" (no /dev/video{index})" if sys.platform.startswith("linux") else ""
        raise SourceError(
            f"camera {index} did not open after {retries + 1} attempts{hint}; "
            "check the cable and permissions, or pass --source FILE"
        )
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"--source {spec}: no such file, folder or camera")
    if p.is_dir():
        imgs = sorted(q for q in p.iterdir() if q.suffix.lower() in _IMAGE_EXTS)
        if not imgs:
            raise ValueError(f"--source {spec}: the folder has no images ({', '.join(_IMAGE_EXTS)})")
        return _images(imgs, f"{len(imgs)} images in {p}")
    if p.suffix.lower() in _IMAGE_EXTS:
        return _images([p], str(p))
    try:
        return _capture(str(p), str(p), live=False, loop=False, width=None, height=None)
    except SourceError as e:
        raise ValueError(f"--source {spec}: not a video or image OpenCV can read") from e


def _camera_present(index: int) -> bool:
    """False only when we can tell there is no such camera (Linux without /dev/videoN)."""
    return not sys.platform.startswith("linux") or os.path.exists(f"/dev/video{index}")


# --------------------------------------------------------------------------- drawing


def annotate(frame: np.ndarray, detections: list[Any], numbers: list[Any], *, header: str = "") -> np.ndarray:
    """Draws digits (box, digit, score), numbers (box and value) and a header line on a copy of ``frame``."""
    import cv2

    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if out.shape[2] == 4:
        out = np.ascontiguousarray(out[:, :, :3])
    scale = max(0.4, min(out.shape[:2]) / 960)
    thick = max(1, round(2 * scale))
    for n in numbers:
        if len(n.digits) > 1:
            x, y, w, h = n.box
            cv2.rectangle(out, (x - 4, y - 4), (x + w + 4, y + h + 4), (0, 200, 255), thick)
    for d in detections:
        x, y, w, h = d.box
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), thick)
        _label(out, f"{d.digit} {d.score:.2f}", (x, y + h + 2), scale * 0.9, (0, 140, 0), below=True)
    for n in numbers:
        if len(n.digits) > 1:
            _label(out, n.value, (n.box[0] - 4, n.box[1] - 6), scale * 1.3, (0, 110, 200))
    if header:
        _label(out, header, (6, 6), scale, (40, 40, 40), below=True)
    return out


def _label(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float, bg: tuple[int, int, int], *, below: bool = False
) -> None:
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, round(2 * scale))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = org
    y = y if below else y - th - base
    x = min(max(x, 0), max(0, img.shape[1] - tw - 4))
    y = min(max(y, 0), max(0, img.shape[0] - th - base - 4))
    cv2.rectangle(img, (x, y), (x + tw + 4, y + th + base + 4), bg, -1)
    cv2.putText(img, text, (x + 2, y + th + 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


# --------------------------------------------------------------------------- output


class _Saver:
    """Writes annotated frames to a video (.mp4, .avi, .mkv) or PNG/JPEG files."""

    def __init__(self, path: str, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps or 15.0
        self.kind = (
            "video"
            if self.path.suffix.lower() in _VIDEO_EXTS
            else ("image" if self.path.suffix.lower() in _IMAGE_EXTS else "dir")
        )
        self.writer: Any = None
        self.count = 0
        target = self.path if self.kind == "dir" else self.path.parent
        target.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.kind == "video":
            if self.writer is None:
                fourcc = cv2.VideoWriter.fourcc(*_VIDEO_EXTS[self.path.suffix.lower()])
                self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
                if not self.writer.isOpened():
                    raise SourceError(f"cannot write video {self.path} (codec unavailable); save as .avi or PNGs")
            self.writer.write(frame)
        else:
            p = (
                self.path / f"frame_{self.count:05d}.png"
                if self.kind == "dir"
                else (
                    self.path
                    if self.count == 0
                    else self.path.with_name(f"{self.path.stem}_{self.count:05d}{self.path.suffix}")
                )
            )
            if not cv2.imwrite(str(p), frame):
                raise SourceError(f"cannot write {p}")
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _display_available(cv2: Any) -> str:
    """'' when a window can be shown, else why not."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no display ($DISPLAY is not set)"
    try:
        cv2.namedWindow("edge-infer camera", cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        return "this OpenCV has no GUI (opencv-python-headless)"
    return ""


# --------------------------------------------------------------------------- the app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``edge-infer camera`` options."""
    parser.add_argument(
        "--source",
        default=None,
        help="camera index (0), 'picamera', a video, an image, a folder of images, or 'sample' "
        "(default: camera 0, else the bundled sample clip)",
    )
    from ..detect import DEFAULT_MIN_SCORE
    from .cli import add_model_arguments, parse_roi

    add_model_arguments(parser)
    parser.add_argument("--width", type=int, default=640, help="capture width asked of a camera (default 640)")
    parser.add_argument("--height", type=int, default=480, help="capture height asked of a camera (default 480)")
    parser.add_argument(
        "--min-score",
        type=float,
        default=DEFAULT_MIN_SCORE,
        help=f"drop digits read with a lower probability (default {DEFAULT_MIN_SCORE})",
    )
    parser.add_argument(
        "--min-height", type=int, default=16, help="smallest digit to read, in frame pixels (default 16)"
    )
    parser.add_argument(
        "--max-height",
        type=int,
        default=None,
        help="tallest digit to read, in frame pixels (default: half the frame's height; "
        "raise it for a close-up of one digit)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="the fast pipeline: several times the frame rate, but no line or grid erasure and less "
        "tolerance of uneven light (see the README)",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="attempts to reopen a camera / re-read a missing frame before giving up (default 3)",
    )
    parser.add_argument("--headless", action="store_true", help="no window: print one JSON line per frame")
    parser.add_argument(
        "--save",
        default=None,
        metavar="PATH",
        help="write the annotated frames: a video (.mp4, .avi), a .png path, or a folder",
    )
    parser.add_argument("--stats", action="store_true", help="print the time per stage at the end (after warm-up)")
    parser.add_argument(
        "--roi",
        type=parse_roi,
        default=None,
        metavar="X,Y,W,H",
        help="search only this region of each frame (a fixed camera on a fixed display): faster, no distractors",
    )


def _check_args(args: argparse.Namespace) -> None:
    for name in ("width", "height", "max_frames", "num_threads", "min_height", "max_height"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries}")
    if not 0.0 <= args.min_score <= 1.0:
        raise ValueError(f"--min-score must be in [0, 1], got {args.min_score}")


def run(args: argparse.Namespace) -> int:
    """Runs the demo; returns the exit code (see the module docstring)."""
    _check_args(args)
    cv2 = _quiet_cv2()
    from ..detect import detect, group_numbers
    from ..recognizer import DigitRecognizer
    from ..results import DetectStats

    show = not args.headless
    if show:
        why = _display_available(cv2)
        if why:
            show = False
            keep = (
                f"annotated frames go to {args.save}"
                if args.save
                else "add --save out/demo.mp4 to keep the annotated video"
            )
            print(f"edge-infer camera: {why}: running headless (one JSON line per frame); {keep}", file=sys.stderr)
    try:
        # The sample clip loops in a window or up to --max-frames; headless it plays once.
        source = open_source(
            args.source,
            width=args.width,
            height=args.height,
            retries=args.retries,
            loop_sample=show or args.max_frames is not None,
        )
    except SourceError as e:
        print(f"edge-infer camera: {e}", file=sys.stderr)
        return 1
    saver: _Saver | None = None
    stages = ("capture", "segment", "prepare", "infer", "draw")
    times: dict[str, list[float]] = {k: [] for k in stages}
    try:
        with DigitRecognizer(args.model, delegate=args.delegate, num_threads=args.num_threads) as rec:
            delegate = f"{rec.model.delegate} ({rec.model.backend})"
            frame = _read(source, args.retries, 0)
            if frame is None:
                print(f"edge-infer camera: {source.name} gave no frames", file=sys.stderr)
                return 1 if source.live else 2
            options = {
                "min_score": args.min_score,
                "fast": args.fast,
                "min_height": args.min_height,
                "max_height": args.max_height,
                "roi": args.roi,
            }
            for _ in range(2):  # warm-up: the first invokes (and an Edge TPU's first) are slow
                detect(rec, frame, **options)
            if args.save:
                saver = _Saver(args.save, source.fps)
            ends: deque[float] = deque(maxlen=30)
            stats = DetectStats()
            count = 0
            t_capture = 0.0
            while frame is not None:
                dets = detect(rec, frame, stats=stats, **options)
                t = stats.as_dict()
                numbers = group_numbers(dets)
                t0 = time.perf_counter()
                fps = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else 0.0
                header = (
                    f"{fps:4.1f} FPS | {delegate} | {len(dets)} digits" if fps else f"{delegate} | {len(dets)} digits"
                )
                shown = annotate(frame, dets, numbers, header=header) if (show or saver) else frame
                if saver:
                    saver.write(shown)
                if show:
                    cv2.imshow("edge-infer camera", shown)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                t["draw"] = time.perf_counter() - t0
                t["capture"] = t_capture
                for k in stages:
                    times[k].append(t.get(k, 0.0))
                if not show:
                    print(json.dumps(_frame_json(count, dets, numbers, fps, t)), flush=True)
                count += 1
                ends.append(time.perf_counter())
                if args.max_frames and count >= args.max_frames:
                    break
                t0 = time.perf_counter()
                frame = _read(source, args.retries, count)
                t_capture = time.perf_counter() - t0
    except SourceError as e:
        print(f"edge-infer camera: {e}", file=sys.stderr)
        return 1
    finally:
        source.close()
        if saver:
            saver.close()
        if show:
            cv2.destroyAllWindows()
    if saver:
        print(f"edge-infer camera: wrote {saver.count} annotated frames to {saver.path}", file=sys.stderr)
    if args.stats:
        _print_stats(times, source.name, delegate)
    return 0


def _read(source: FrameSource, retries: int, count: int) -> np.ndarray | None:
    """The next frame; a live camera's missing frame is retried, then an error."""
    frame = source.read()
    attempt = 0
    while frame is None and source.live and attempt < retries:
        attempt += 1
        log.info("%s gave no frame, retrying (%d/%d)", source.name, attempt, retries)
        time.sleep(0.2)
        frame = source.read()
    if frame is None and source.live:
        raise SourceError(f"{source.name} stopped giving frames after {count} frames ({retries} retries)")
    return frame


def _frame_json(i: int, dets: list[Any], numbers: list[Any], fps: float, t: dict[str, float]) -> dict[str, Any]:
    return {
        "frame": i,
        "digits": [{"box": list(d.box), "digit": d.digit, "score": round(d.score, 4)} for d in dets],
        "numbers": [{"box": list(n.box), "value": n.value, "scores": [round(s, 4) for s in n.scores]} for n in numbers],
        "fps": round(fps, 2),
        "ms": {k: round(v * 1000, 2) for k, v in t.items()},
    }


def _print_stats(times: dict[str, list[float]], source: str, delegate: str) -> None:
    n = len(times["capture"])
    if not n:
        return
    total = [sum(v) for v in zip(*times.values())]
    print(f"\n{n} frames from {source}, delegate {delegate} (after 2 warm-up passes)", file=sys.stderr)
    print(f"{'stage':<10} {'mean ms':>8} {'median ms':>10} {'p95 ms':>8}", file=sys.stderr)
    for k, v in [*times.items(), ("total", total)]:
        a = np.asarray(v) * 1000
        print(f"{k:<10} {a.mean():8.2f} {np.median(a):10.2f} {np.percentile(a, 95):8.2f}", file=sys.stderr)
    mean_total = float(np.mean(total))
    print(
        f"throughput {1.0 / mean_total if mean_total > 0 else 0:.1f} FPS "
        "(segment+prepare = segmentation and crops, infer = one model invoke per frame)",
        file=sys.stderr,
    )
