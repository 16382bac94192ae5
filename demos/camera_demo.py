#!/usr/bin/env python3
"""The camera demo: ``python demos/camera_demo.py [options]`` is ``edge-infer camera [options]``.

Reads digits and numbers live from a camera (``--source 0`` or ``picamera``), a
video, an image or a folder of images, or the bundled sample clip when no camera
opens. See ``--help`` and :mod:`edge_infer.apps.camera`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from edge_infer.apps.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["camera", *sys.argv[1:]]))
