"""Generated meter videos with their truth: counter drums and an LCD, as a fixed camera sees them.

:func:`make_drum_video` draws a mechanical counter (white digits on black drums, DejaVu Sans Bold)
counting up over hours of simulated time: the last drum rolls continuously, the others turn
over when the drum to their right passes 9 -> 0. :func:`make_lcd_video` draws a reflective LCD
(dark digits on a grey-green glass) whose digits change at once. Both then do to each frame what a
camera on a meter sees: a shift of a few pixels and up to 2 degrees of rotation (a bumped mount),
exposure changes, a moving glare spot, sensor noise, and two frames with a hand in front.

Everything comes from one seed, so the same call gives the same frames everywhere. The truth of
frame i is ``truth[i]``: the counter in units of the last digit (a float for drums: ``1234.6``
means the last drum is 60% of the way from 4 to 5), or None when a hand hides the counter.

Run as a script to write a video and its reference frame::

    python -m tests.meter_video --out /tmp/meter   # meter.mp4, reference.png, truth.json, meter.toml
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["MeterVideo", "acceptable", "make_drum_video", "make_lcd_video", "write_video"]

FRAME = (360, 640)  # (h, w)
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
DIGIT_W, DIGIT_H = 44, 64  # a drum window / an LCD digit cell
GAP = 10
BAR_X, BAR_Y = 150, 150


@dataclass
class MeterVideo:
    """Frames and truth of a generated meter.

    Attributes:
        frames: uint8 BGR frames, ``FRAME`` sized.
        truth: per frame the counter in last-digit units (float), or None (a hand in front).
        reference: the still, unshaken frame the ROIs are drawn on.
        rois: the digit windows ``(x, y, w, h)`` on the reference, left to right.
        seconds: simulated seconds between frames.
        kind: ``"drum"`` or ``"lcd"``.
    """

    frames: list[np.ndarray]
    truth: list[float | None]
    reference: np.ndarray
    rois: list[tuple[int, int, int, int]]
    seconds: float
    kind: str
    moves: list[tuple[float, float, float]] = field(default_factory=list)


def acceptable(counter: float) -> tuple[int, ...]:
    """The values (in last-digit units) a reader may give for a counter at ``counter``.

    A drum between two digits shows both: the reading is its lower or its upper digit.

    >>> acceptable(1234.0), acceptable(1234.6)
    ((1234,), (1234, 1235))
    """
    lo = math.floor(counter + 1e-9)
    return (lo,) if counter - lo < 1e-6 else (lo, lo + 1)


@functools.cache
def _glyph(ch: str, height: int) -> np.ndarray:
    """Alpha mask (float32, tight box) of one character in DejaVu Sans Bold, ``height`` px tall."""
    from PIL import Image, ImageDraw, ImageFont

    f = ImageFont.truetype(str(FONT), int(height * 1.4))
    left, top, right, bottom = f.getbbox(ch)
    im = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(im).text((2 - left, 2 - top), ch, font=f, fill=255)
    a = np.asarray(im, np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.05)
    a = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    import cv2

    scale = height / a.shape[0]
    return cv2.resize(a, (max(1, round(a.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)


@functools.cache
def _drum_strip() -> np.ndarray:
    """The printed band of one drum: digits 0..9 then 0 again, one per ``DIGIT_H * 1.5`` px (alpha)."""
    pitch = int(DIGIT_H * 1.5)
    glyph_h = int(DIGIT_H * 0.62)
    strip = np.zeros((pitch * 11, DIGIT_W), np.float32)
    for i in range(11):
        g = _glyph(str(i % 10), glyph_h)
        y = i * pitch + (pitch - g.shape[0]) // 2
        x = (DIGIT_W - g.shape[1]) // 2
        strip[y : y + g.shape[0], x : x + g.shape[1]] = np.maximum(strip[y : y + g.shape[0], x : x + g.shape[1]], g)
    return strip


def _drum_window(position: float) -> np.ndarray:
    """Alpha of one drum window at ``position`` (0..10; 3.4 = 40% of the way from 3 to 4)."""
    pitch = int(DIGIT_H * 1.5)
    strip = _drum_strip()
    centre = position % 10 * pitch + pitch / 2
    y0 = int(round(centre - DIGIT_H / 2))
    return strip[y0 : y0 + DIGIT_H]


def drum_positions(counter: float, n: int) -> list[float]:
    """Each drum's position, left to right, for a counter (in last-digit units).

    A drum turns over with the last drum while every drum right of it shows 9.

    >>> [round(p, 2) for p in drum_positions(1299.5, 4)]
    [1.0, 2.5, 9.5, 9.5]
    >>> drum_positions(1234.0, 4)
    [1.0, 2.0, 3.0, 4.0]
    """
    out = []
    for i in range(n):  # i = 0 is the last (rightmost) drum
        unit = 10**i
        digit = math.floor(counter / unit + 1e-9) % 10
        below = counter % unit
        roll = max(0.0, below - (unit - 1)) if i else counter % 1
        out.append(digit + roll if i else counter % 10)
    return out[::-1]


def _face(n: int, rng: np.random.Generator, kind: str) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The still meter face (BGR float32 0..1) and its digit windows."""
    import cv2

    h, w = FRAME
    img = np.empty((h, w, 3), np.uint8)  # drawn in 8 bits (OpenCV's text needs it), then made float
    img[:] = (199, 204, 204)
    cv2.circle(img, (w // 2, h // 2), 170, (89, 89, 97), 6)
    title = "WASSERZAEHLER  Q3 2,5" if kind == "drum" else "ENERGY METER  kWh"
    cv2.putText(img, title, (140, 110), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (38, 38, 38), 2, cv2.LINE_AA)
    unit_x = BAR_X + n * (DIGIT_W + GAP) + 14
    unit = "m3" if kind == "drum" else "kWh"
    cv2.putText(img, unit, (unit_x, BAR_Y + 46), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (25, 25, 25), 2, cv2.LINE_AA)
    cv2.putText(img, "No 2026-0417", (230, 290), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (50, 50, 50), 1, cv2.LINE_AA)
    for k in range(12):  # dial ticks: texture for the alignment
        a = k * math.pi / 6
        p1 = (int(w / 2 + 150 * math.cos(a)), int(h / 2 + 150 * math.sin(a)))
        p2 = (int(w / 2 + 165 * math.cos(a)), int(h / 2 + 165 * math.sin(a)))
        cv2.line(img, p1, p2, (50, 50, 50), 3)
    cv2.rectangle(img, (40, 30), (90, 80), (50, 75, 150), -1)
    cv2.rectangle(img, (560, 290), (610, 330), (25, 25, 25), 2)
    bar = (15, 15, 15) if kind == "drum" else (140, 158, 148)
    cv2.rectangle(img, (BAR_X - 8, BAR_Y - 8), (BAR_X + n * (DIGIT_W + GAP) - GAP + 8, BAR_Y + DIGIT_H + 8), bar, -1)
    img = img.astype(np.float32) / 255.0
    xx = np.arange(w, dtype=np.float32)
    img *= (0.9 + 0.1 * (xx / w))[None, :, None]  # light from the right
    rois = []
    for i in range(n):
        x = BAR_X + i * (DIGIT_W + GAP)
        rois.append((x, BAR_Y, DIGIT_W, DIGIT_H))
    return img, rois


def _draw_digits(img: np.ndarray, rois: list[tuple[int, int, int, int]], counter: float, kind: str) -> None:
    n = len(rois)
    if kind == "drum":
        for (x, y, w, h), pos in zip(rois, drum_positions(counter, n)):
            a = _drum_window(pos)[..., None]
            drum = (0.05, 0.05, 0.05)
            win = np.empty((h, w, 3), np.float32)
            win[:] = drum
            shade = (0.75 + 0.25 * np.sin(np.linspace(0.3, math.pi - 0.3, h)))[:, None, None]  # the drum's curve
            img[y : y + h, x : x + w] = (win * (1 - a) + 0.95 * a) * shade
    else:
        text = str(int(counter)).rjust(n, "0")[-n:]
        for (x, y, w, h), ch in zip(rois, text):
            g = _glyph(ch, int(h * 0.8))
            gy, gx = y + (h - g.shape[0]) // 2, x + (w - g.shape[1]) // 2
            sub = img[gy : gy + g.shape[0], gx : gx + g.shape[1]]
            sub[:] = sub * (1 - g[..., None]) + 0.12 * g[..., None]


def _camera(img: np.ndarray, rng: np.random.Generator, move: tuple[float, float, float], hand: bool) -> np.ndarray:
    """One frame as the camera sees it: moved, exposed, glared, noisy, uint8 BGR."""
    import cv2

    h, w = FRAME
    dx, dy, deg = move
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if hand:  # a hand (skin, soft edges) over the counter
        mask = np.zeros((h, w), np.float32)
        cx = int(rng.uniform(BAR_X + 60, BAR_X + 240))
        cv2.ellipse(mask, (cx, BAR_Y + 40), (230, 110), rng.uniform(-20, 20), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), 6)[..., None]
        out = out * (1 - mask) + np.array((0.55, 0.65, 0.85), np.float32) * mask
    gain = rng.uniform(0.6, 1.25)
    out = out * gain + rng.uniform(-0.05, 0.05)
    if rng.random() < 0.5:  # glare: a soft bright spot somewhere on the face
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        gx, gy = rng.uniform(100, 540), rng.uniform(80, 280)
        r = rng.uniform(25, 60)
        out = out + rng.uniform(0.2, 0.5) * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * r * r))[..., None]
    out = out + rng.normal(0, 0.012, out.shape).astype(np.float32)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def _counter_track(n_frames: int, start: float, rng: np.random.Generator, *, max_step: float) -> list[float]:
    """A counter that only counts up: idle spells and spells of use, at most ``max_step`` per frame."""
    c, out = start, []
    use = 0.0
    for _ in range(n_frames):
        out.append(c)
        if rng.random() < 0.08:
            use = 0.0 if rng.random() < 0.4 else rng.uniform(0.05, max_step)
        c += use * rng.uniform(0.7, 1.0)
    return out


def _make(
    kind: str, n_frames: int, seed: int, n_digits: int, start: float, max_step: float, hands: tuple[int, ...]
) -> MeterVideo:
    rng = np.random.default_rng(seed)
    face, rois = _face(n_digits, rng, kind)
    track = _counter_track(n_frames, start, rng, max_step=max_step)
    if kind == "lcd":
        track = [float(math.floor(c)) for c in track]
    ref = face.copy()
    _draw_digits(ref, rois, track[0], kind)
    reference = np.clip(ref * 255 + 0.5, 0, 255).astype(np.uint8)
    frames, truth, moves = [], [], []
    move = (0.0, 0.0, 0.0)
    for i, c in enumerate(track):
        if rng.random() < 0.1:  # the mount is bumped now and then: up to 4 px and 2 degrees
            move = (rng.uniform(-4, 4), rng.uniform(-4, 4), rng.uniform(-2, 2))
        img = face.copy()
        _draw_digits(img, rois, c, kind)
        hand = i in hands
        frames.append(_camera(img, rng, move, hand))
        truth.append(None if hand else c)
        moves.append(move)
    return MeterVideo(frames, truth, reference, rois, 30.0, kind, moves)


def make_drum_video(
    n_frames: int = 400, *, seed: int = 0, n_digits: int = 6, start: float = 12986.0, hands: tuple[int, ...] = (57, 233)
) -> MeterVideo:
    """A counter of ``n_digits`` drums counting up, one frame per 30 simulated seconds.

    Args:
        n_frames: frames (400 frames are 3 h 20 min).
        seed: everything random comes from it.
        n_digits: drums.
        start: the counter at frame 0, in last-drum units (12986 -> ``012986``; with one decimal, 1298.6).
        hands: frames with a hand in front of the counter.
    """
    return _make("drum", n_frames, seed, n_digits, start, 0.45, hands)


def make_lcd_video(
    n_frames: int = 400, *, seed: int = 1, n_digits: int = 6, start: float = 48795.0, hands: tuple[int, ...] = (91, 302)
) -> MeterVideo:
    """An LCD of ``n_digits`` digits (dark on grey-green) counting up; digits change at once."""
    return _make("lcd", n_frames, seed, n_digits, start, 0.75, hands)


def write_video(video: MeterVideo, out_dir: str | Path, *, decimals: int = 1) -> dict[str, Path]:
    """Writes ``meter.avi`` (MJPG), ``reference.png``, ``truth.json`` and a ``meter.toml`` for it."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = FRAME
    vw = cv2.VideoWriter(str(out / "meter.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for f in video.frames:
        vw.write(f)
    vw.release()
    cv2.imwrite(str(out / "reference.png"), video.reference)
    (out / "truth.json").write_text(json.dumps({"truth": video.truth, "seconds": video.seconds}))
    rois = ",\n".join(f"  [{x}, {y}, {w_}, {h_}]" for x, y, w_, h_ in video.rois)
    (out / "meter.toml").write_text(
        f'name = "generated {video.kind} meter"\n'
        f'source = "{out / "meter.avi"}"\n'
        f'reference = "reference.png"\n'
        f"decimals = {decimals}\n"
        f'unit = "{"m³" if video.kind == "drum" else "kWh"}"\n'
        f"interval = 0\n"
        f"rois = [\n{rois}\n]\n\n"
        f"[plausibility]\nmax_rate = 10.0\n",
        encoding="utf-8",
    )
    return {"video": out / "meter.avi", "reference": out / "reference.png", "config": out / "meter.toml"}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", choices=("drum", "lcd"), default="drum")
    ap.add_argument("--frames", type=int, default=400)
    a = ap.parse_args()
    v = make_drum_video(a.frames) if a.kind == "drum" else make_lcd_video(a.frames)
    print(write_video(v, a.out))
