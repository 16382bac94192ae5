"""``python -m bench`` from a checkout: the benchmark suite (see :mod:`bench.suite`)."""

from __future__ import annotations

import argparse
import logging
import sys

from bench.suite import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(run.__doc__ or "").strip().splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except ValueError as e:  # bad options: one line, exit 2, as the edge-infer commands do
        print(f"python -m bench: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
