"""``python -m edge_infer`` is the ``edge-infer`` command."""

import sys

from .cli import main

sys.exit(main())
