"""The annotated live stream for ``edge-infer serve --camera``: MJPEG parts from one capture thread.

:class:`LiveStream` runs one capture thread however many viewers there are: it reads a
frame, finds the digits and numbers, draws them with the FPS, encodes a JPEG once and
hands the same bytes to every viewer. It starts with the first viewer and stops a few
seconds after the last one leaves, so an idle device does no work. Frames come from
:func:`edge_infer.apps.camera.open_source` and are drawn by :func:`edge_infer.apps.camera.annotate`.

Imports OpenCV only when a stream is opened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...detect import group_numbers
from ...detect.frames import frame_gray
from ...errors import StreamBusyError
from ...recognizer import DigitRecognizer

__all__ = ["LiveStream", "StreamBusyError", "read_frame"]

log = logging.getLogger(__name__)


def read_frame(
    recognizer: DigitRecognizer, frame: np.ndarray, *, fast: bool = False, **options: Any
) -> tuple[list[Any], list[Any]]:
    """The digits in a frame and the numbers they form, from one detection pass
    (``fast``: the quick pipeline, see :mod:`edge_infer.detect.fast`; ``options`` go to
    :func:`edge_infer.detect.detect`, e.g. ``max_height``, ``roi``); the numbers carry
    their decimal points."""
    detections = recognizer.detect(frame, fast=fast, **options)
    gray = frame_gray(frame) if len(detections) > 1 else None
    return detections, group_numbers(detections, gray=gray)


class LiveStream:
    """An annotated MJPEG stream: one capture thread shared by every viewer.

    The thread starts with the first viewer and stops a few seconds after the last
    one leaves (so an idle device does no work); :meth:`close` ends it and every
    viewer's response. Thread-safe.
    """

    BOUNDARY = "frame"
    MAX_VIEWERS = 4

    def __init__(
        self,
        recognizer: DigitRecognizer,
        source: Callable[[], Any],
        *,
        max_fps: float = 15.0,
        idle_stop: float = 3.0,
        jpeg_quality: int = 80,
    ) -> None:
        """Args:
        recognizer: Reads the digits in each frame.
        source: A callable returning an :class:`edge_infer.apps.camera.FrameSource`, called
            each time capture starts (and again when a file ends, to loop it).
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
        """A stream of any :func:`edge_infer.apps.camera.open_source` spec, checked now (one frame read).

        Files and image folders play round and round.

        Raises:
            edge_infer.apps.camera.SourceError: A camera does not open.
            FileNotFoundError, ValueError: No such file, or it gives no frame.
        """
        from ..camera import open_source

        with open_source(spec) as probe:
            if probe.read() is None:
                raise ValueError(f"camera source {probe.name} opened but gave no frame")
        stream = cls(recognizer, lambda: open_source(spec), **options)
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
            return {
                "source": self.name,
                "running": self._thread is not None,
                "frames": self._seq,
                "fps": round(self._fps, 1),
                "viewers": self._viewers,
                "digits": self._digits,
                "numbers": self._numbers,
                "error": self._error,
            }

    def _capture(self) -> None:
        import cv2

        from ..camera import annotate

        delegate = self._rec.model.delegate
        with self._source_lock:
            src = None
            try:
                src = self._open()
                rate = min(self._max_fps, src.fps or self._max_fps)
                last = next_at = time.monotonic()
                misses = 0
                while True:
                    with self._cond:
                        idle = self._viewers == 0 and time.monotonic() - self._last_viewer > self._idle_stop
                        if self._closed or idle:
                            self._thread = None
                            self._cond.notify_all()
                            return
                    frame = src.read()
                    if frame is None:
                        misses += 1
                        if src.live and misses <= 5:  # a camera hiccup: try again shortly
                            time.sleep(0.2)
                            continue
                        if src.live or misses > 2:
                            raise ValueError(f"{src.name} stopped giving frames")
                        src.close()  # a file or folder ended: play it again
                        src = self._open()
                        continue
                    misses = 0
                    detections, numbers = read_frame(self._rec, frame)
                    now = time.monotonic()
                    fps = 1.0 / max(now - last, 1e-6)
                    self._fps = fps if self._seq == 0 else 0.9 * self._fps + 0.1 * fps
                    last = now
                    shown = annotate(frame, detections, numbers, header=f"{self._fps:.1f} FPS  {delegate}")
                    ok, jpg = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
                    if not ok:
                        raise ValueError(f"JPEG encoding failed for a {frame.shape} frame")
                    part = (
                        f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode()
                        + jpg.tobytes()
                        + b"\r\n"
                    )
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
