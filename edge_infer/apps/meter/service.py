"""The meter loop: a frame every ``interval`` seconds -> MeterReader -> MQTT (and history, crops).

:class:`MeterService` owns the source, the reader and the publisher; ``run()`` loops in the calling
thread until :meth:`stop` (any thread, or SIGTERM through the CLI), ``start()`` loops in a daemon
thread (what ``edge-infer serve --meter`` does). Everything is checked before the first frame: a
bad config, a missing reference (``save_reference=True`` takes it from the camera), an ROI outside
the frame, an unreachable broker - each raises with one clear message.

Thread safety: ``stop`` from anywhere; the web page reads ``reader.last`` under the reader's lock.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from typing import Any, Callable

import numpy as np

from ...errors import ConfigError, SourceError
from .config import MeterConfig
from .configfile import atomic_write
from .reader import MeterReader, Reading

__all__ = ["MeterService"]

log = logging.getLogger(__name__)


class MeterService:
    """Reads a meter on a schedule and publishes what passes the checks.

    Args:
        cfg: The meter config.
        recognizer: A shared :class:`edge_infer.DigitRecognizer` (default: the reader loads one).
        mqtt: Connect to the config's broker (when it has ``[mqtt]``).
        save_reference: When the reference frame is missing, save the first frame as it.
        on_reading: Called with every :class:`Reading` (in the loop's thread).
    """

    def __init__(
        self,
        cfg: MeterConfig,
        *,
        recognizer: Any = None,
        mqtt: bool = True,
        save_reference: bool = False,
        on_reading: Callable[[Reading], None] | None = None,
    ) -> None:
        from ..camera import open_source
        from .config import check_rois
        from .reader import read_reference

        self.cfg = cfg
        self.on_reading = on_reading
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if cfg.reference.is_file():  # a bad ROI is a config error: say so before opening the camera
            check_rois(cfg, read_reference(cfg.reference).shape)
        self.source = open_source(cfg.source, loop_sample=False)
        self.reader: MeterReader | None = None
        self.publisher: Any = None
        try:
            reference = None
            if not cfg.reference.is_file() and not save_reference:
                raise ConfigError(
                    f"reference frame {cfg.reference} is missing; run `edge-infer meter --config "
                    f"{cfg.path or 'FILE'} --save-reference` to take it from the camera"
                )
            if mqtt and cfg.mqtt is not None:  # an unreachable broker fails before anything is written
                from .mqtt import MqttPublisher

                self.publisher = MqttPublisher(cfg).start()
            if not cfg.reference.is_file():
                reference = self._frame()
                self.save_reference(reference)
            self.reader = MeterReader(cfg, recognizer=recognizer, reference=reference)
        except BaseException:
            self.close()
            raise

    def save_reference(self, frame: np.ndarray) -> None:
        """Writes ``frame`` as the reference (PNG, atomically)."""
        import cv2

        ok, buf = cv2.imencode(".png", frame)
        if not ok:
            raise ConfigError(f"cannot encode the reference frame for {self.cfg.reference}")
        self.cfg.reference.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.cfg.reference, buf.tobytes())
        log.info("saved the reference frame %s (%dx%d)", self.cfg.reference, frame.shape[1], frame.shape[0])

    def _frame(self, retries: int = 3) -> np.ndarray:
        for _ in range(retries + 1):
            f = self.source.read()
            if f is not None:
                return f
            if not self.source.live:
                break
            _time.sleep(0.5)
        raise SourceError(f"{self.source.name} gave no frame after {retries + 1} tries")

    def step(self, now: float | None = None) -> Reading | None:
        """Reads one frame and publishes it when it passes; None at the end of a file source."""
        frame = self.source.read()
        if frame is None:
            if not self.source.live:
                return None
            frame = self._frame()  # a camera hiccup: a few more tries, else SourceError
        reading = self.reader.read(frame, time=now)  # type: ignore[union-attr]
        if reading.ok and self.publisher is not None:
            self.publisher.publish(reading.value, when=reading.time, raw=reading.raw, confidence=reading.confidence)
        if reading.ok:
            log.info("%s: %s %s", self.cfg.name, reading.value, self.cfg.unit)
        else:
            log.info("%s: %s (%s) %s", self.cfg.name, reading.status, reading.raw, reading.reason)
        if self.on_reading is not None:
            self.on_reading(reading)
        return reading

    def run(self, *, max_frames: int | None = None, clock: Callable[[int], float] | None = None) -> int:
        """Loops until :meth:`stop`, the end of a file source, or ``max_frames``; returns frames read.

        Args:
            max_frames: Stop after this many frames.
            clock: Frame index -> its time (default: now); a video of a meter can carry its own times.
        """
        n = 0
        next_t = _time.monotonic()
        while not self._stop.is_set() and (max_frames is None or n < max_frames):
            if self.reader is None or self.step(None if clock is None else clock(n)) is None:
                break
            n += 1
            if self.source.live:  # a file is read as fast as it goes
                next_t += self.cfg.interval
                self._stop.wait(max(0.0, next_t - _time.monotonic()))
        return n

    def start(self) -> MeterService:
        """Runs the loop in a daemon thread; returns self."""

        def loop() -> None:
            try:
                self.run()
            except Exception:
                log.exception("the meter loop stopped")

        self._thread = threading.Thread(target=loop, name="edge-infer-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the loop (from any thread)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def close(self) -> None:
        """Stops, says offline, closes the reader and the source; safe to call twice."""
        self.stop()
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.source.close()

    def __enter__(self) -> MeterService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
