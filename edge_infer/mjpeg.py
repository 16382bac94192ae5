"""The annotated live stream for ``edge-infer serve --camera``: MJPEG parts from one capture thread.

:class:`LiveStream` runs one capture thread however many viewers there are: it reads a
frame, finds the digits and numbers, draws them with the FPS, encodes a JPEG once and
hands the same bytes to every viewer. It starts with the first viewer and stops a few
seconds after the last one leaves, so an idle device does no work.

Imports OpenCV only when a stream is opened.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from .recognizer import DigitRecognizer

__all__ = ["LiveStream", "StreamBusyError", "read_frame"]

log = logging.getLogger(__name__)


class StreamBusyError(RuntimeError):
    """No room for another viewer (or the stream is closing): try again later."""


def read_frame(recognizer: DigitRecognizer, frame: np.ndarray) -> tuple[list[Any], list[Any]]:
    """The digits in a frame and the numbers they form, from one detection pass."""
    from . import vision

    detections = recognizer.detect(frame)
    group = getattr(vision, "group_numbers", None)
    numbers = group(detections) if group is not None else recognizer.read_numbers(frame)
    return detections, numbers


class _VideoSource:
    """Frames from a camera index, a video file (looped) or ``"sample"`` (the bundled clip).

    A minimal stand-in until :mod:`edge_infer.camera` provides the frame source.
    """

    def __init__(self, spec: str | int) -> None:
        import cv2

        self.name = str(spec)
        if spec == "sample":
            clips = sorted(p for p in (resources.files("edge_infer") / "data").iterdir()
                           if p.name.endswith((".mp4", ".avi", ".mkv")))
            if not clips:
                raise ValueError("no sample clip in edge_infer/data; pass a camera index or a video file")
            spec = str(clips[0])
        target: str | int = int(spec) if isinstance(spec, str) and spec.isdigit() else spec
        self.is_file = isinstance(target, str) and os.path.isfile(target)
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise ValueError(f"camera source {self.name!r} could not be opened (no such device or unreadable video)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else None

    def read(self) -> np.ndarray | None:
        import cv2

        ok, frame = self._cap.read()
        if not ok and self.is_file:  # loop a clip
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


def _annotate(frame: np.ndarray, detections: list[Any], numbers: list[Any], fps: float) -> np.ndarray:
    """Boxes and digits, numbers above their group, FPS in the corner (a copy)."""
    import cv2

    out = frame.copy() if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for d in detections:
        x, y, w, h = (int(v) for v in d.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 200, 0), 2)
        cv2.putText(out, str(d.digit), (x, y + h + 18), font, 0.6, (0, 200, 0), 2, cv2.LINE_AA)
    for n in numbers:
        x, y, w, h = (int(v) for v in n.box)
        cv2.rectangle(out, (x - 4, y - 4), (x + w + 4, y + h + 4), (255, 160, 0), 1)
        cv2.putText(out, str(n.value), (x, max(18, y - 10)), font, 0.8, (255, 160, 0), 2, cv2.LINE_AA)
    label = f"{fps:4.1f} FPS"
    cv2.rectangle(out, (0, 0), (110, 26), (0, 0, 0), -1)
    cv2.putText(out, label, (6, 19), font, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class LiveStream:
    """An annotated MJPEG stream: one capture thread shared by every viewer.

    The thread starts with the first viewer and stops a few seconds after the last
    one leaves (so an idle device does no work); :meth:`close` ends it and every
    viewer's response. Thread-safe.
    """

    BOUNDARY = "frame"
    MAX_VIEWERS = 4

    def __init__(self, recognizer: DigitRecognizer, source: Callable[[], Any], *, max_fps: float = 15.0,
                 idle_stop: float = 3.0, jpeg_quality: int = 80) -> None:
        """Args:
            recognizer: Reads the digits in each frame.
            source: A callable returning a frame source (``read() -> frame | None``,
                ``close()``, ``fps``, ``name``), called each time capture starts.
            max_fps: Frames per second at most (a clip plays at its own rate below this).
            idle_stop: Seconds without viewers before the capture stops.
            jpeg_quality: 1-100.
        """
        self._rec = recognizer
        self._open = source
        self._max_fps = max_fps
        self._idle_stop = idle_stop
        self._quality = jpeg_quality
        self._cond = threading.Condition()
        self._source_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._viewers = 0
        self._last_viewer = 0.0
        self._seq = 0
        self._part = b""
        self._fps = 0.0
        self._numbers: list[Any] = []
        self._digits = 0
        self._error: str | None = None
        self.name = "?"

    @classmethod
    def open(cls, recognizer: DigitRecognizer, spec: str | int, **options: Any) -> LiveStream:
        """A stream of a camera index, video file or ``"sample"``, checked now (one frame read).

        Raises:
            ValueError: The source cannot be opened or gives no frame.
        """
        probe = _VideoSource(spec)
        try:
            if probe.read() is None:
                raise ValueError(f"camera source {spec!r} opened but gave no frame")
        finally:
            probe.close()
        stream = cls(recognizer, lambda: _VideoSource(spec), **options)
        stream.name = probe.name
        return stream

    def subscribe(self) -> _Viewer:
        """A viewer's iterator of multipart MJPEG parts (close it when done).

        Raises:
            StreamBusyError: :attr:`MAX_VIEWERS` are watching already, or the stream is closed.
        """
        with self._cond:
            if self._closed:
                raise StreamBusyError("the stream is shutting down")
            if self._viewers >= self.MAX_VIEWERS:
                raise StreamBusyError(f"{self.MAX_VIEWERS} viewers are watching already; try again later")
            self._viewers += 1
            self._last_viewer = time.monotonic()
            if self._thread is None:
                self._error = None
                self._thread = threading.Thread(target=self._capture, name="edge-infer-capture", daemon=True)
                self._thread.start()
        return _Viewer(self)

    def _leave(self) -> None:
        with self._cond:
            self._viewers -= 1
            self._last_viewer = time.monotonic()

    def _next_part(self, seen: int) -> tuple[int, bytes] | None:
        with self._cond:
            for _ in range(100):  # up to 10 s for a frame, then end this response
                if self._closed or (self._thread is None and self._error):
                    return None
                if self._seq != seen and self._part:
                    return self._seq, self._part
                self._cond.wait(0.1)
        return None

    def stats(self) -> dict[str, Any]:
        """Frames captured, FPS, viewers and the numbers in the latest frame."""
        with self._cond:
            return {"source": self.name, "running": self._thread is not None, "frames": self._seq,
                    "fps": round(self._fps, 1), "viewers": self._viewers, "digits": self._digits,
                    "numbers": self._numbers, "error": self._error}

    def _capture(self) -> None:
        import cv2

        with self._source_lock:
            src = None
            try:
                src = self._open()
                rate = min(self._max_fps, src.fps or self._max_fps)
                last = next_at = time.monotonic()
                while True:
                    with self._cond:
                        idle = self._viewers == 0 and time.monotonic() - self._last_viewer > self._idle_stop
                        if self._closed or idle:
                            self._thread = None
                            self._cond.notify_all()
                            return
                    frame = src.read()
                    if frame is None:
                        raise ValueError(f"camera source {src.name!r} stopped giving frames")
                    detections, numbers = read_frame(self._rec, frame)
                    now = time.monotonic()
                    fps = 1.0 / max(now - last, 1e-6)
                    self._fps = fps if self._seq == 0 else 0.9 * self._fps + 0.1 * fps
                    last = now
                    ok, jpg = cv2.imencode(".jpg", _annotate(frame, detections, numbers, self._fps),
                                           [cv2.IMWRITE_JPEG_QUALITY, self._quality])
                    if not ok:
                        raise ValueError(f"JPEG encoding failed for a {frame.shape} frame")
                    part = (f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                            .encode() + jpg.tobytes() + b"\r\n")
                    with self._cond:
                        self._part, self._seq = part, self._seq + 1
                        self._numbers = list(numbers)
                        self._digits = len(detections)
                        self._cond.notify_all()
                    next_at = max(next_at + 1.0 / rate, time.monotonic() - 1.0)
                    time.sleep(max(0.0, next_at - time.monotonic()))
            except Exception as e:  # a camera that fails is reported to viewers, not fatal to the server
                log.exception("live stream from %s failed", self.name)
                with self._cond:
                    self._error = str(e) or type(e).__name__
                    self._thread = None
                    self._cond.notify_all()
            finally:
                if src is not None:
                    src.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stops the capture and ends every viewer's response. Idempotent."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class _Viewer:
    """One viewer's response body: an iterator of MJPEG parts; ``close()`` leaves the stream."""

    def __init__(self, stream: LiveStream) -> None:
        self._stream = stream
        self._seen = 0
        self._open = True

    def __iter__(self) -> _Viewer:
        return self

    def __next__(self) -> bytes:
        got = self._stream._next_part(self._seen) if self._open else None
        if got is None:
            self.close()
            raise StopIteration
        self._seen, part = got
        return part

    def close(self) -> None:
        if self._open:
            self._open = False
            self._stream._leave()
