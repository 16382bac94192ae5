"""``python -m edge_infer`` is the ``edge-infer`` command."""

import sys

from .apps.cli import main

sys.exit(main())
