"""Image work with no model: files in, arrays out, and the MNIST layout.

- :mod:`.io`: image files and encoded bytes -> upright, opaque arrays (EXIF, alpha).
- :mod:`.preprocess`: gray, alpha, polarity, ink maps and :func:`to_mnist` for one crop.
- :mod:`.layout`: the one MNIST layout (tight box, 20 px, stroke width, centre of mass).

Pure numpy; OpenCV is used when installed, imported on first use.
"""

from __future__ import annotations

from .layout import MNIST_BOX, MNIST_SIZE, center_of_mass_place, mnist_layout
from .preprocess import flatten_alpha, to_gray, to_mnist

__all__ = ["MNIST_BOX", "MNIST_SIZE", "center_of_mass_place", "flatten_alpha", "mnist_layout", "to_gray", "to_mnist"]
