#!/usr/bin/env python3
"""Makes the bundled sample clip: a handheld camera panning over a page of numbers.

``python demos/make_sample_clip.py`` (from a checkout, with the MNIST data the
conversion stage uses) writes ``edge_infer/data/sample_clip.mp4``: 640x480,
12 fps, 4 s, MPEG-4 part 2 (which OpenCV's pip wheels read and write).

The page holds handwritten numbers (MNIST *test* digits, in pen), printed ones
(DejaVu and Hershey fonts), a few words, rules under some numbers and a small
grid. The camera drifts across it with hand shake, a little rotation, zoom and
perspective, a soft shadow, uneven light, slight defocus and sensor noise.
Deterministic: the same seed gives the same clip. The glyphs come from the
scene generator of the tests (tests/scenes.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.scenes import mnist_glyph, printed_glyph, text_glyph  # noqa: E402

PAGE = (1100, 1500)  # h, w
FRAME = (480, 640)


def _page(rng: np.random.Generator, mnist: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Ink alpha of the page (float32, 1 = ink)."""
    import cv2

    images, labels = mnist
    alpha = np.zeros(PAGE, np.float32)

    def put(g: np.ndarray, x: int, y: int) -> tuple[int, int]:
        h, w = g.shape
        np.maximum(alpha[y : y + h, x : x + w], g, out=alpha[y : y + h, x : x + w])
        return w, h

    def hand(digits: str, x: int, y: int, height: int, rule: bool = False) -> None:
        x0 = x
        for ch in digits:
            idx = np.flatnonzero(labels == int(ch))
            g = mnist_glyph(images[idx[rng.integers(len(idx))]], int(height * rng.uniform(0.93, 1.07)), rng)
            w, h = put(g, x, y + height - g.shape[0] + int(rng.integers(-3, 4)))
            x += w + int(height * rng.uniform(0.18, 0.35))
        if rule:
            cv2.line(alpha, (x0 - 20, y + height + 10), (x + 10, y + height + 10), 0.7, 2)

    def printed(digits: str, x: int, y: int, height: int) -> None:
        for ch in digits:
            g = printed_glyph(int(ch), height, rng)
            w, _ = put(g, x, y + height - g.shape[0])
            x += w + int(height * 0.18)

    def word(text: str, x: int, y: int, height: int) -> None:
        put(text_glyph(text, height, rng), x, y)

    word("Readings", 90, 70, 56)
    hand("2024", 520, 60, 80, rule=True)
    word("Room", 90, 230, 44)
    printed("317", 290, 222, 60)
    hand("58", 620, 230, 70)
    word("Total", 1000, 90, 44)
    printed("4096", 1180, 80, 60)
    hand("736", 950, 250, 76, rule=True)
    # A small grid with a few printed digits, like a puzzle.
    gx, gy, cell = 120, 420, 78
    for i in range(4):
        cv2.line(alpha, (gx, gy + i * cell), (gx + 3 * cell, gy + i * cell), 0.85, 3)
        cv2.line(alpha, (gx + i * cell, gy), (gx + i * cell, gy + 3 * cell), 0.85, 3)
    for r, c, d in ((0, 0, "5"), (0, 2, "8"), (1, 1, "3"), (2, 0, "9"), (2, 2, "1")):
        g = printed_glyph(int(d), 46, rng)
        put(g, gx + c * cell + (cell - g.shape[1]) // 2, gy + r * cell + (cell - g.shape[0]) // 2)
    hand("41", 520, 470, 84)
    word("Date", 520, 640, 44)
    printed("1987", 700, 630, 56)
    hand("6039", 960, 470, 72, rule=True)
    hand("25", 1180, 640, 80)
    word("Score", 110, 820, 48)
    hand("97", 330, 800, 88)
    printed("250", 620, 830, 70)
    hand("8", 960, 820, 90)
    printed("12", 1130, 850, 58)
    return alpha


def _frames(rng: np.random.Generator, alpha: np.ndarray, n: int) -> list[np.ndarray]:
    import cv2

    H, W = FRAME
    ph, pw = PAGE
    paper = np.array([214.0, 226.0, 232.0])  # slightly warm white, BGR
    ink = np.array([70.0, 38.0, 30.0])  # blue-black pen
    page = paper[None, None, :] * (1 - alpha[..., None]) + ink[None, None, :] * alpha[..., None]
    page += rng.normal(0, 0.6, (ph, pw, 1))  # paper grain, fixed to the page
    page = page.astype(np.float32)
    desk = (58.0, 66.0, 74.0)
    # A smooth camera path over the page: centre, zoom, roll, tilt; plus hand shake.
    t = np.linspace(0, 1, n)
    cx = 470 + (pw - 940) * (0.5 - 0.5 * np.cos(np.pi * t))
    cy = 360 + 330 * np.sin(np.pi * t) ** 2 + 40 * np.sin(3 * np.pi * t)
    zoom = 0.74 + 0.05 * np.sin(2 * np.pi * t)
    roll = np.deg2rad(3.0 * np.sin(2.3 * np.pi * t + 0.4))
    shake = np.cumsum(rng.normal(0, 0.8, (n, 2)), axis=0)
    shake -= np.linspace(0, 1, n)[:, None] * shake[-1]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for i in range(n):
        # Where the frame's corners land on the page (a rotated, zoomed, keystoned window).
        hw, hh = 0.5 * W / zoom[i], 0.5 * H / zoom[i]
        corners = np.array([[-hw * 1.04, -hh], [hw * 1.04, -hh], [hw, hh], [-hw, hh]])
        c, s = np.cos(roll[i]), np.sin(roll[i])
        corners = corners @ np.array([[c, -s], [s, c]]).T + [cx[i] + shake[i, 0], cy[i] + shake[i, 1]]
        M = cv2.getPerspectiveTransform(corners.astype(np.float32), np.float32([[0, 0], [W, 0], [W, H], [0, H]]))
        f = cv2.warpPerspective(
            page, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=desk
        )
        # Light from the upper left, and the shadow of the hand holding the phone.
        light = 1.05 - 0.25 * (xx / W + yy / H) / 2
        sx = W * (1.15 - 0.3 * t[i])
        shadow = 1.0 - 0.35 * np.clip((xx - sx + 0.4 * yy) / 110.0 + 0.5, 0, 1)
        f *= (light * shadow)[..., None]
        sigma = 0.6 + 0.5 * abs(np.sin(5 * np.pi * t[i]))  # focus hunting a little
        f = cv2.GaussianBlur(f, (0, 0), sigma)
        f += rng.normal(0, 0.5, (H, W, 1)).astype(np.float32)  # sensor noise (luma)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def main() -> int:
    import cv2

    from convert.data import load_mnist

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "edge_infer" / "data" / "sample_clip.mp4"))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = load_mnist(download=False)
    rng = np.random.default_rng(args.seed)
    frames = _frames(rng, _page(rng, (data.x_test, data.y_test)), args.frames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (FRAME[1], FRAME[0]))
    if not w.isOpened():
        print(f"cannot write {out}", file=sys.stderr)
        return 1
    for f in frames:
        w.write(f)
    w.release()
    print(f"wrote {out}: {len(frames)} frames, {out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
