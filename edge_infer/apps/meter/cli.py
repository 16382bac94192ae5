"""Read a meter with a camera and publish plausible readings (MQTT, Home Assistant): ``edge-infer meter``.

``edge-infer meter --config meter.toml`` reads the meter every ``interval`` seconds until Ctrl-C or
SIGTERM (``--frames N`` stops after N frames; a video source stops at its end), printing one line
per reading; ``--save-reference`` takes the missing reference frame from the camera; ``--no-mqtt``
skips the broker. ``edge-infer meter label DIR`` shows each saved crop in the terminal and asks
for its digit, filing it under ``DIR/<digit>`` (``DIR/n`` for "not a digit") for
``python -m convert finetune --images DIR``.

Exit codes: 0 done; 1 the camera failed; 2 a bad config (one line naming the key and the fix),
an unreachable broker at start, or bad arguments. See docs/meter.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SourceError

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``meter`` options and its ``label`` action."""
    parser.add_argument("--config", metavar="FILE", help="the meter's TOML config (see docs/meter.md)")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--save-reference", action="store_true", help="take a missing reference frame from the camera")
    parser.add_argument("--no-mqtt", action="store_true", help="do not connect to the broker")
    parser.add_argument("--json", action="store_true", help="one JSON line per reading")
    parser.add_argument("--check", action="store_true", help="check the config (and the reference frame) and exit")
    sub = parser.add_subparsers(dest="meter_command", metavar="ACTION")
    p = sub.add_parser("label", help="name the saved digit crops, one by one, in the terminal")
    p.add_argument("dir", metavar="DIR", help="the crops folder ([crops] dir in the config)")
    p.add_argument("--limit", type=int, default=None, help="stop after N crops")


def run(args: argparse.Namespace) -> int:
    """Runs ``edge-infer meter``."""
    if getattr(args, "meter_command", None) == "label":
        return label(Path(args.dir), limit=args.limit)
    if not args.config:
        raise ValueError("--config FILE is required (see docs/meter.md for an example)")
    from .config import check_rois, load_config
    from .reader import read_reference

    cfg = load_config(args.config)
    if args.check:
        if cfg.reference.is_file():
            check_rois(cfg, read_reference(cfg.reference).shape)
        print(f"edge-infer meter: {cfg.path} is fine ({cfg.digits} digits, {cfg.decimals} decimals, {cfg.unit})")
        return 0

    def show(r: object) -> None:
        if args.json:
            print(json.dumps(r.to_dict()), flush=True)  # type: ignore[attr-defined]
        elif r.ok:  # type: ignore[attr-defined]
            print(f"{cfg.name}: {r.value} {cfg.unit}", flush=True)  # type: ignore[attr-defined]
        else:
            print(f"{cfg.name}: {r.status} ({r.raw}) {r.reason}", flush=True)  # type: ignore[attr-defined]

    try:
        return _run(cfg, args, show)
    except SourceError as e:  # the machine's camera, not the config: exit 1 (systemd restarts it)
        print(f"edge-infer meter: {e}", file=sys.stderr)
        return 1


def _run(cfg: Any, args: argparse.Namespace, show: Any) -> int:
    from .service import MeterService

    with MeterService(cfg, mqtt=not args.no_mqtt, save_reference=args.save_reference, on_reading=show) as svc:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: svc.stop())
        broker = f", MQTT {cfg.mqtt.host}:{cfg.mqtt.port}" if svc.publisher is not None and cfg.mqtt else ""
        print(
            f"edge-infer meter: reading {cfg.name} from {svc.source.name} every {cfg.interval:g} s{broker}",
            file=sys.stderr,
            flush=True,
        )
        try:
            svc.run(max_frames=args.frames)
        except KeyboardInterrupt:
            pass
    return 0


# --------------------------------------------------------------------------- labelling


def _preview(img: np.ndarray, width: int = 28) -> str:
    """A crop as ANSI half-block characters (two grey pixels per character cell)."""
    import cv2

    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    h, w = gray.shape
    height = max(2, round(h * width / max(w, 1)) // 2 * 2)
    small = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    lines = []
    for y in range(0, height, 2):
        row = []
        for x in range(width):
            top, bottom = 232 + int(small[y, x]) * 23 // 255, 232 + int(small[y + 1, x]) * 23 // 255
            row.append(f"\x1b[38;5;{top}m\x1b[48;5;{bottom}m\u2580")
        lines.append("".join(row) + "\x1b[0m")
    return "\n".join(lines)


def label(root: Path, *, limit: int | None = None) -> int:
    """Asks for the digit of each unlabelled crop and files it under ``root/<label>``."""
    from ...image.io import read_image
    from .crops import label_dir, unlabelled_crops

    files = unlabelled_crops(root)
    if not files:
        print(f"edge-infer meter label: no crops waiting in {root / 'unlabelled'}")
        return 0
    print(f"{len(files)} crops to label: type 0-9, n (not a digit), s (skip), d (delete) or q (quit)")
    done = 0
    for path in files[:limit]:
        try:
            print(_preview(read_image(path)))
        except (OSError, ValueError) as e:
            print(f"{path.name}: cannot read it ({e}); skipped")
            continue
        guess = path.stem.rsplit("_g", 1)[-1]
        while True:
            try:
                answer = input(f"{path.name} (model: {guess}) > ").strip().lower()
            except EOFError:
                answer = "q"
            if answer in ("q", "s", "d"):
                break
            try:
                target = root / label_dir(answer)
                break
            except ValueError as e:
                print(e)
        if answer == "q":
            break
        if answer == "s":
            continue
        if answer == "d":
            path.unlink()
            continue
        target.mkdir(exist_ok=True)
        shutil.move(str(path), str(target / path.name))
        done += 1
    print(f"labelled {done} crops; fine-tune with: python -m convert finetune --images {root}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.execvp(sys.executable, [sys.executable, "-m", "edge_infer", "meter", *sys.argv[1:]])
