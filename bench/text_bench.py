"""Running text is not digits: how many digits the pipeline reports on pages of digit-free print.

    python bench/text_bench.py                 # 4 pages, 1280x960, letters 20-45 px
    python bench/text_bench.py --pages 12 --save out/text   # annotated pages

Each page is lines of words in one of four faces (DejaVu Sans and Serif, Liberation Sans
and Serif), with the letters that look like digits on purpose: "oil", "lol", "IO",
"Illinois", the pronoun "I", "is", "so". Every digit reported is a false one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edge_infer import DigitRecognizer  # noqa: E402

TEXT = (
    "the quick brown fox jumps over a lazy dog while I look at it; all of these little lines are "
    "text only (no numbers) and Illinois will tell if lowercase l and capital I or o read as digits. "
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua. I think it is fine. Hello world, I said. Oslo, Bill, Ill, lol, oil, foil, "
    "poll, tool, look, loop, hollow, follow, billion, ILLEGAL, IO, OIL, LOL, so it goes."
).split()
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
)


def page(seed: int) -> np.ndarray:
    """A 1280x960 BGR page of running text, slightly blurred, drawn from ``seed``."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    size = int(rng.integers(20, 46))
    font = ImageFont.truetype(FONTS[seed % len(FONTS)], size)
    img = Image.new("L", (1280, 960), 235)
    draw = ImageDraw.Draw(img)
    y, i = 30, int(rng.integers(len(TEXT)))
    while y < 900:
        x = 30
        while True:
            word = TEXT[i % len(TEXT)]
            width = draw.textlength(word + " ", font=font)
            if x + width > 1250:
                break
            draw.text((x, y), word, fill=30, font=font)
            x += width
            i += 1
        y += int(size * 1.5)
    a = cv2.GaussianBlur(np.array(img), (0, 0), 0.8)
    return cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--model", default=None, help="a .tflite model (default: the shipped one)")
    ap.add_argument("--save", type=Path, default=None, help="write annotated pages here")
    a = ap.parse_args(argv)
    total = 0
    with DigitRecognizer(a.model) as rec:
        for s in range(a.pages):
            frame = page(s)
            dets = rec.detect(frame)
            total += len(dets)
            print(f"page {s}: {len(dets)} digits reported {''.join(str(d.digit) for d in dets)}")
            if a.save is not None:
                import cv2

                from edge_infer.apps.camera import annotate

                a.save.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(a.save / f"text_{s}.png"), annotate(frame, dets, []))
    print(f"{total} digits reported on {a.pages} pages of digit-free text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
