"""Delegate specs, loading, and the ``"auto"`` plan.

Specs a user can pass as ``delegate=``:

==================  ==========================================================
``"auto"``          Edge TPU when the model is compiled for it (or a
                    ``<name>_edgetpu.tflite`` twin sits beside it) and a TPU
                    answers; otherwise ``"cpu"``. Every skipped step is logged
                    at INFO with its reason; a compiled twin with no TPU answering
                    at WARNING (an unplugged Coral).
``"cpu"``           The runtime's CPU kernels with XNNPACK (the default path).
``"cpu:noxnnpack"`` The CPU kernels without XNNPACK (for comparisons).
``"edgetpu"``       A Coral Edge TPU through ``libedgetpu``; also
                    ``"edgetpu:usb"``, ``"edgetpu:usb:0"``, ``"edgetpu:pci"``,
                    ``"edgetpu:pci:0"`` to pick a device, or pycoral's
                    ``"edgetpu::0"`` for the first TPU of any kind.
``"gpu"``           The TFLite GPU delegate (a library you build or install;
                    named by ``EDGE_INFER_GPU_DELEGATE`` or
                    ``delegate_options={"library": ...}``).
a path              Any external delegate library exporting
                    ``tflite_plugin_create_delegate``; ``delegate_options``
                    are passed to it as strings.
==================  ==========================================================

An explicit choice is never replaced by another: it loads or raises
:class:`~edge_infer.errors.DelegateUnavailableError` saying what failed and the fix.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, cast

from ..errors import DelegateUnavailableError
from .backend import Backend, get_backend
from .modelfile import EDGETPU_SUFFIX, is_edgetpu_model, read_checked

__all__ = [
    "DelegateSpec",
    "DelegateStatus",
    "available_delegates",
    "edgetpu_library",
    "load_external",
    "parse_delegate",
    "plan_auto",
]

log = logging.getLogger(__name__)

_EDGETPU_DEVICE = re.compile(r"^(usb|pci)(:\d+)?$|^:\d+$")  # pycoral's device strings
EDGETPU_FIX = (
    "install the Edge TPU runtime (Debian package `libedgetpu1-std` from Coral's apt "
    "repository), plug the Coral in (a USB 3 port), and make sure your user may use it "
    "(the udev rule that package installs, and membership of the `plugdev` group); "
    "then unplug and replug the device"
)


@dataclass(frozen=True)
class DelegateSpec:
    """A parsed ``delegate=`` argument.

    Attributes:
        kind: ``"auto"``, ``"cpu"``, ``"cpu:noxnnpack"``, ``"edgetpu"``, ``"gpu"``
            or ``"external"``.
        device: For ``"edgetpu"``: ``"usb"``, ``"usb:0"``, ``"pci:0"``... or None.
        library: For ``"external"``: the library path or name.
        text: The spec as the user wrote it.
    """

    kind: str
    device: str | None = None
    library: str | None = None
    text: str = ""


def parse_delegate(spec: str | os.PathLike[str] | DelegateSpec | None) -> DelegateSpec:
    """Parses a delegate spec.

    Args:
        spec: See the module docstring; None means ``"auto"``.

    Returns:
        The parsed spec.

    Raises:
        TypeError: ``spec`` is not a string or path.
        ValueError: ``spec`` is a string that names no delegate.

    >>> parse_delegate("edgetpu:usb:0")
    DelegateSpec(kind='edgetpu', device='usb:0', library=None, text='edgetpu:usb:0')
    >>> parse_delegate("cpu").kind
    'cpu'
    >>> parse_delegate("edgetpu::0").device   # pycoral's ":0": the first TPU, USB or PCIe
    ':0'
    """
    if spec is None:
        return DelegateSpec("auto", text="auto")
    if isinstance(spec, DelegateSpec):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(
            f"delegate must be a string such as 'auto', 'cpu', 'edgetpu' or a library path, not {type(spec).__name__}"
        )
    text = spec.strip()
    low = text.lower()
    if low in ("auto", "cpu", "cpu:noxnnpack", "gpu", "edgetpu"):
        return DelegateSpec(low, text=text)
    if low.startswith("edgetpu:"):
        device = low.split(":", 1)[1]
        if not _EDGETPU_DEVICE.match(device):
            raise ValueError(
                f"bad Edge TPU device in delegate {text!r}: use 'edgetpu', 'edgetpu:usb', "
                "'edgetpu:usb:0', 'edgetpu:pci', 'edgetpu:pci:0' or 'edgetpu::0' (the first TPU of any kind)"
            )
        return DelegateSpec("edgetpu", device=device, text=text)
    if os.sep in text or "/" in text or re.search(r"\.(so(\.\d+)*|dylib|dll)$", low):
        return DelegateSpec("external", library=text, text=text)
    raise ValueError(
        f"unknown delegate {text!r}: use 'auto', 'cpu', 'cpu:noxnnpack', 'edgetpu', "
        "'edgetpu:usb[:N]', 'edgetpu:pci[:N]', 'edgetpu::N', 'gpu', or a path to a delegate library"
    )


def edgetpu_library() -> str:
    """The Edge TPU runtime library name for this OS (``EDGE_INFER_EDGETPU_LIBRARY`` wins)."""
    override = os.environ.get("EDGE_INFER_EDGETPU_LIBRARY")
    if override:
        return override
    if sys.platform == "darwin":
        return "libedgetpu.1.dylib"
    if sys.platform.startswith("win"):
        return "edgetpu.dll"
    return "libedgetpu.so.1"


def gpu_library(options: Mapping[str, Any] | None = None) -> str:
    """The GPU delegate library: ``options['library']``, ``EDGE_INFER_GPU_DELEGATE``, or the usual name."""
    if options and options.get("library"):
        return str(options["library"])
    return os.environ.get("EDGE_INFER_GPU_DELEGATE") or "libtensorflowlite_gpu_delegate.so"


def _validate_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"delegate_options must be a dict of option name -> value, not {type(options).__name__}")
    out: dict[str, str] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"delegate option names must be non-empty strings, got {key!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"delegate option {key!r} must be a string, number or bool, not {type(value).__name__}")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def load_external(library: str, options: Mapping[str, Any] | None = None, *, backend: Backend | None = None) -> Any:
    """Loads an external delegate library through the runtime's own ``Delegate``.

    Args:
        library: A path or a library name the dynamic loader can find.
        options: Options passed to ``tflite_plugin_create_delegate`` as strings.
        backend: The runtime to use (default: :func:`~edge_infer.runtime.backend.get_backend`).

    Returns:
        The runtime's delegate object, to pass to an interpreter.

    Raises:
        OSError: The library cannot be loaded.
        ValueError: The library loaded but refused to create a delegate (for the
            Edge TPU: no device answered).
        TypeError: ``options`` is not a mapping of strings to scalars.
    """
    opts = _validate_options(options)
    backend = backend or get_backend()
    cls: Any = backend.delegate_class
    # The runtime's Delegate.__del__ assumes its __init__ finished; when loading
    # fails it would print "Exception ignored ..." (or call the destroy function
    # with a NULL pointer). Pre-setting _library makes a failed object inert.
    delegate = cls.__new__(cls)
    delegate._library = None
    try:
        delegate.__init__(library, opts)
    except BaseException:
        delegate._library = None
        raise
    return delegate


def load_delegate_for(spec: DelegateSpec, options: Mapping[str, Any] | None, backend: Backend) -> Any:
    """Loads the delegate object for an explicit spec (not ``auto``/``cpu``).

    Raises:
        DelegateUnavailableError: It cannot be loaded; the message says why and the fix.
    """
    if spec.kind == "edgetpu":
        opts = dict(options or {})
        if spec.device and "device" not in opts:
            opts["device"] = spec.device
        lib = edgetpu_library()
        try:
            return load_external(lib, opts, backend=backend)
        except OSError as e:
            raise DelegateUnavailableError(
                f"delegate {spec.text!r}: the Edge TPU runtime library {lib} could not be loaded ({e}); {EDGETPU_FIX}"
            ) from e
        except ValueError as e:
            where = f"device {opts['device']!r}" if opts.get("device") else "any device"
            raise DelegateUnavailableError(
                f"delegate {spec.text!r}: {lib} loaded but no Edge TPU answered at {where}"
                f" ({str(e).strip() or 'no detail given'}); {EDGETPU_FIX}"
            ) from e
    if spec.kind == "gpu":
        opts = {k: v for k, v in (options or {}).items() if k != "library"}
        lib = gpu_library(options)
        try:
            return load_external(lib, opts, backend=backend)
        except (OSError, ValueError) as e:
            raise DelegateUnavailableError(
                f"delegate 'gpu': the GPU delegate library {lib} could not be loaded ({e}); "
                "the pip runtimes do not include it: build "
                "libtensorflowlite_gpu_delegate.so for your board and name it with "
                "EDGE_INFER_GPU_DELEGATE or delegate_options={'library': PATH}"
            ) from e
    if spec.kind == "external":
        lib = spec.library or ""
        has_dir = os.sep in lib or "/" in lib
        if has_dir and not Path(lib).is_file():
            raise DelegateUnavailableError(
                f"delegate library {lib!r} does not exist; pass the path of a shared library "
                "that exports tflite_plugin_create_delegate"
            )
        try:
            return load_external(lib, options, backend=backend)
        except OSError as e:
            raise DelegateUnavailableError(
                f"delegate library {lib!r} could not be loaded ({e}); check it is a shared "
                "library for this machine's architecture and that its dependencies are found"
            ) from e
        except AttributeError as e:
            raise DelegateUnavailableError(
                f"delegate library {lib!r} does not export tflite_plugin_create_delegate "
                f"({e}); it is not a TFLite external delegate"
            ) from e
        except ValueError as e:
            raise DelegateUnavailableError(
                f"delegate library {lib!r} refused to create a delegate with options "
                f"{dict(options or {})!r}: {str(e).strip() or 'no detail given'}"
            ) from e
    raise ValueError(f"delegate kind {spec.kind!r} has no library to load")


@dataclass(frozen=True)
class AutoPlan:
    """What ``delegate="auto"`` decided: which file to load, on which delegate."""

    path: Path
    content: bytes
    delegate: str
    delegate_obj: Any


def plan_auto(path: Path, content: bytes, backend: Backend, *, verify: bool = True) -> AutoPlan:
    """The ``"auto"`` plan.

    1. Edge TPU, when ``path`` is compiled for it (or a ``<stem>_edgetpu.tflite``
       twin sits beside it) and the Edge TPU delegate loads (a TPU answers);
    2. otherwise the CPU with XNNPACK, on the uncompiled model.

    Each skipped step is logged at INFO with its reason.

    Raises:
        DelegateUnavailableError: ``path`` is compiled for the Edge TPU, has no
            uncompiled twin, and no TPU answered.
        ModelError: The twin that would be loaded is damaged.
    """
    cpu_path: Path | None
    tpu_path: Path | None
    if is_edgetpu_model(path, content):
        tpu_path, tpu_content = path, content
        cpu_path = None
        if path.stem.endswith(EDGETPU_SUFFIX):
            twin = path.with_name(path.stem[: -len(EDGETPU_SUFFIX)] + path.suffix)
            cpu_path = twin if twin.is_file() else None
    else:
        twin = path.with_name(path.stem + EDGETPU_SUFFIX + path.suffix)
        tpu_content, cpu_path = b"", path
        tpu_path = twin if twin.is_file() else None
        if tpu_path is None:
            log.info("auto: Edge TPU skipped: %s is not compiled for it and has no %s twin", path.name, twin.name)

    if tpu_path is not None:
        try:
            obj = load_delegate_for(DelegateSpec("edgetpu", text="edgetpu"), None, backend)
        except DelegateUnavailableError as e:
            if cpu_path is None:
                raise DelegateUnavailableError(
                    f"model {path.name} is compiled for the Edge TPU, no uncompiled twin sits beside "
                    f"it, and no TPU answered: {e}. Load the uncompiled .tflite to run on the CPU."
                ) from e
            # a compiled twin is there, so a TPU was meant to answer: an unplugged Coral
            # would otherwise be a silent slowdown
            log.warning(
                "auto: %s is compiled for the Edge TPU but no TPU answered (%s); running on the CPU", tpu_path.name, e
            )
        else:
            log.info("auto: chose Edge TPU for %s", tpu_path.name)
            return AutoPlan(tpu_path, tpu_content or read_checked(tpu_path, verify=verify), "edgetpu", obj)
    cpu_path = cast(Path, cpu_path)  # not None: with no twin, the TPU branch returned or raised
    if cpu_path != path:
        content = read_checked(cpu_path, verify=verify)
    log.info("auto: chose CPU (XNNPACK) for %s", cpu_path.name)
    return AutoPlan(cpu_path, content, "cpu", None)


@dataclass(frozen=True)
class DelegateStatus:
    """Whether one delegate can be used on this machine.

    Attributes:
        name: The delegate spec, e.g. ``"edgetpu"``.
        available: True when it loaded just now.
        detail: What was found, or why it is unavailable and the fix.
    """

    name: str
    available: bool
    detail: str


def available_delegates() -> list[DelegateStatus]:
    """Tries each delegate this machine might have and says which load.

    Loading the Edge TPU delegate opens the device for a moment; do not call this
    while another process is using the TPU.

    Returns:
        One status for ``cpu``, ``cpu:noxnnpack``, ``edgetpu`` and ``gpu``.

    Raises:
        BackendNotFoundError: No TFLite runtime is installed.
    """
    backend = get_backend()
    out = [
        DelegateStatus("cpu", True, f"{backend.name} {backend.version} CPU kernels with XNNPACK"),
        DelegateStatus(
            "cpu:noxnnpack",
            backend.op_resolver_type is not None,
            "built-in kernels without XNNPACK"
            if backend.op_resolver_type is not None
            else f"{backend.name} {backend.version} cannot switch XNNPACK off",
        ),
    ]
    for name in ("edgetpu", "gpu"):
        try:
            delegate = load_delegate_for(parse_delegate(name), None, backend)
        except DelegateUnavailableError as e:
            out.append(DelegateStatus(name, False, str(e)))
        else:
            lib = edgetpu_library() if name == "edgetpu" else gpu_library()
            out.append(DelegateStatus(name, True, f"{lib} loaded"))
            del delegate
    return out
