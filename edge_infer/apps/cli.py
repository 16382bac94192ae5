"""The ``edge-infer`` command.

Exit codes: 0 success; 1 the machine cannot do it (no runtime, a delegate that
does not load); 2 bad usage or bad input (a one-line message, no traceback).

Subcommands ``camera`` and ``serve`` live in their own modules
(``edge_infer.apps.camera``, ``edge_infer.apps.serve.app``), each with
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, Sequence

from .. import __version__
from ..errors import BackendNotFoundError, DelegateUnavailableError, EdgeInferError

log = logging.getLogger(__name__)

_PLUGINS = {
    "camera": ("edge_infer.apps.camera", "run the camera demo on a camera, video, image(s) or the sample clip"),
    "serve": ("edge_infer.apps.serve.app", "serve digit recognition over HTTP (needs the [serve] extra)"),
    "meter": (
        "edge_infer.apps.meter.cli",
        "read a meter with a camera, publish plausible readings (the [meter] extra)",
    ),
}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--delegate``, ``--num-threads``: the options every subcommand that loads a model takes."""
    p.add_argument("--model", default=None, help="a .tflite model (default: the shipped int8 model)")
    p.add_argument(
        "--delegate", default="auto", help="auto, cpu, cpu:noxnnpack, edgetpu[:usb|:pci[:N]], gpu, or a library path"
    )
    p.add_argument("--num-threads", type=int, default=None, help="interpreter threads")


def _cmd_info(args: argparse.Namespace) -> int:
    from ..runtime import load_model

    with load_model(args.model_path or args.model, delegate=args.delegate, num_threads=args.num_threads) as m:
        size = os.path.getsize(m.path)
        info: dict[str, Any] = {
            "path": str(m.path),
            "size_bytes": size,
            "sha256": m.sha256,
            "backend": f"{m.backend} {m.backend_version}",
            "delegate": m.delegate,
            "inputs": [_tensor(m.input)],
            "outputs": [_tensor(t) for t in m.outputs],
            "ops": m.ops(),
        }
        if m.manifest:
            info["manifest"] = {k: m.manifest[k] for k in ("accuracy", "macs_per_digit", "command") if k in m.manifest}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model     {info['path']}")
    print(f"size      {size:,} bytes   sha256 {m.sha256}")
    print(f"backend   {info['backend']}   delegate {m.delegate}")
    for role, specs in (("input", info["inputs"]), ("output", info["outputs"])):
        for t in specs:
            q = f"scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else "not quantised"
            print(f"{role:<9} {t['name']}  shape={t['shape']}  dtype={t['dtype']}  {q}")
    print(f"ops       {len(info['ops'])}: {' '.join(info['ops'])}")
    for k, v in info.get("manifest", {}).items():
        print(f"{k:<9} {v}")
    return 0


def _tensor(t: Any) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": str(t.dtype), "scale": t.scale, "zero_point": t.zero_point}


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> a region of interest in frame pixels (for ``--roi``).

    >>> parse_roi("10,20,300,120")
    (10, 20, 300, 120)
    """
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise argparse.ArgumentTypeError(f"--roi takes X,Y,W,H in frame pixels (four whole numbers), got {text!r}")
    x, y, w, h = (int(p) for p in parts)
    return (x, y, w, h)


def _cmd_classify(args: argparse.Namespace) -> int:
    from ..detect.frames import check_roi
    from ..image.io import read_image
    from ..recognizer import DigitRecognizer

    if not 1 <= args.top_k <= 10:
        raise ValueError(f"--top-k must be from 1 to 10, got {args.top_k}")
    images = [(path, read_image(path)) for path in args.images]
    if args.roi is not None:  # the digit is in this region of each image
        cut = []
        for path, img in images:
            x, y, w, h = check_roi(args.roi, img.shape)
            cut.append((path, img[y : y + h, x : x + w]))
        images = cut
    with DigitRecognizer(args.model, delegate=args.delegate, num_threads=args.num_threads) as rec:
        preds = rec.classify_batch([img for _, img in images])
        for (path, _), p in zip(images, preds):
            digits = p.scores[:10]
            top = [(int(i), float(digits[i])) for i in (-digits).argsort(kind="stable")[: args.top_k]]
            if args.json:
                print(
                    json.dumps(
                        {
                            "image": path,
                            "digit": p.digit,
                            "score": round(p.score, 4),
                            "is_digit": p.is_digit,
                            "not_a_digit_score": round(p.reject_score, 4),
                            "top_k": [{"digit": d, "score": round(s, 4)} for d, s in top],
                        }
                    )
                )
            else:
                alts = "  ".join(f"{d}:{s:.3f}" for d, s in top[1:])
                if p.is_digit:
                    print(f"{path}: {p.digit}  (score {p.score:.3f}{'; ' + alts if alts else ''})")
                else:
                    print(f"{path}: not a digit  (score {p.reject_score:.3f}; best digit {p.digit} at {p.score:.3f})")
    return 0


def _cmd_delegates(args: argparse.Namespace) -> int:
    from ..runtime import available_delegates

    statuses = available_delegates()
    if args.json:
        print(json.dumps([s.__dict__ for s in statuses], indent=2))
        return 0
    for s in statuses:
        print(f"{s.name:<14} {'yes' if s.available else 'no ':<4} {s.detail}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    """The argument parser, and the plugin modules that registered subcommands."""
    parser = argparse.ArgumentParser(prog="edge-infer", description="Int8 digit recognition on small devices.")
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v INFO, -vv DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="describe a model: backend, delegate, tensors, ops, size, sha256")
    p.add_argument("model_path", nargs="?", metavar="MODEL", help="a .tflite model (default: the shipped one)")
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("classify", help="read the digit in each image (one digit per image)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_arguments(p)
    p.add_argument("--top-k", type=int, default=1, help="also show the next most likely digits")
    p.add_argument("--roi", type=parse_roi, default=None, metavar="X,Y,W,H", help="read only this region of each image")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("delegates", help="which delegates load on this machine, and why not")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_delegates)

    plugins: dict[str, Any] = {}
    for name, (module, help_text) in _PLUGINS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).split("\n\n")[0])
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
        plugins[name] = mod
    return parser, plugins


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-infer`` console script."""
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if args.command in _PLUGINS:  # frame loops: keep freed frame buffers rather than page-fault them back
        from ..runtime.sysmem import keep_freed_memory

        keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except (BackendNotFoundError, DelegateUnavailableError) as e:
        print(f"edge-infer {args.command}: {e}", file=sys.stderr)
        return 1
    except (EdgeInferError, ValueError, TypeError, OSError) as e:
        print(f"edge-infer {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
