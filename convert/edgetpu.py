"""Edge TPU: a compiler-free pre-check, running ``edgetpu_compiler``, parsing its report.

The pre-check reads the ``.tflite`` with the LiteRT interpreter and applies the
Edge TPU's published model requirements: only its supported ops, only int8/uint8
tensors (int32 for biases), static sizes, at most three non-unit dimensions per
tensor. The compiler maps ops to the TPU in execution order up to the first op it
cannot map; from there the rest of the graph runs on the CPU, so the pre-check
also says where the graph would split.

:func:`compile_model` runs ``edgetpu_compiler -s -o OUT_DIR [-m N] MODEL`` and
leaves ``<name>_edgetpu.tflite`` (and the compiler's ``<name>_edgetpu.log``) in
``OUT_DIR``, by default beside the CPU model: the twin ``edge_infer`` looks for.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import CompilationError, CompilerNotFoundError, ConvertError

__all__ = [
    "EDGETPU_OPS",
    "CompileResult",
    "PrecheckResult",
    "compile_model",
    "find_compiler",
    "parse_compiler_output",
    "precheck",
]

COMPILER = "edgetpu_compiler"

#: TFLite builtin ops the Edge TPU compiler can map (coral.ai "supported operations").
EDGETPU_OPS = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS", "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM",
        "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU",
        "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
        "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
        "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
        "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip

_INSTALL_HINT = (
    f"{COMPILER} not found: install the Debian package edgetpu-compiler "
    "(it runs only on x86-64 Linux; use Docker elsewhere) or pass --compiler PATH"
)


# --------------------------------------------------------------------------- pre-check


@dataclass(frozen=True)
class PrecheckResult:
    """What the Edge TPU would make of a model, judged without the compiler.

    Attributes:
        ops: op names in execution order.
        problems: ``(op index or None, message)`` for every rule broken.
        split_at: index of the first op that would stay on the CPU (the graph
            splits there and every later op runs on the CPU too), or None.
    """

    ops: tuple[str, ...]
    problems: tuple[tuple[int | None, str], ...]
    split_at: int | None

    @property
    def ok(self) -> bool:
        """True when every op should map to the Edge TPU."""
        return not self.problems

    def summary(self) -> list[str]:
        """Lines for people: the verdict, then each problem."""
        if self.ok:
            return [f"pre-check: all {len(self.ops)} ops should map to the Edge TPU"]
        lines = []
        if self.split_at is not None:
            n_cpu = len(self.ops) - self.split_at
            lines.append(
                f"pre-check: the graph would split at op {self.split_at} "
                f"({self.ops[self.split_at]}): {self.split_at} op(s) on the Edge TPU, "
                f"{n_cpu} on the CPU"
            )
        for idx, msg in self.problems:
            lines.append(f"  {'model' if idx is None else f'op {idx}'}: {msg}")
        return lines


def precheck(model: bytes | str | os.PathLike[str]) -> PrecheckResult:
    """Check a ``.tflite`` against the Edge TPU's requirements, without the compiler.

    Args:
        model: flatbuffer bytes or a path.

    Returns:
        The :class:`PrecheckResult`.

    Raises:
        ConvertError: the model cannot be loaded.
    """
    from convert.quantize import _interpreter

    interp = _interpreter(model)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    problems: list[tuple[int | None, str]] = []
    first_bad: int | None = None
    for op in ops:
        idx, name = int(op["index"]), str(op["op_name"])
        ins = [i for i in op["inputs"] if i >= 0]
        outs = [i for i in op["outputs"] if i >= 0]
        bad: list[str] = []
        if name not in EDGETPU_OPS:
            bad.append(f"{name} is not supported by the Edge TPU")
        for pos, i in enumerate(ins + outs):
            t = tensors.get(i)
            if t is None:
                continue
            dt = np.dtype(t["dtype"]).name
            is_bias = name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and pos == 2
            is_shape = name in (
                "RESHAPE",
                "MEAN",
                "SUM",
                "PAD",
                "TRANSPOSE",
                "SQUEEZE",
                "EXPAND_DIMS",
                "REDUCE_MAX",
                "REDUCE_MIN",
            ) and 1 <= pos < len(ins)
            if dt not in ("int8", "uint8") and not ((is_bias or is_shape) and dt == "int32"):
                bad.append(f"tensor {t['name']!r} is {dt} (the Edge TPU needs int8/uint8)")
            sig = t.get("shape_signature", t["shape"])
            if any(int(s) < 0 for s in sig):
                bad.append(f"tensor {t['name']!r} has a dynamic size {list(sig)}")
            if sum(1 for s in t["shape"] if int(s) != 1) > 3:
                bad.append(f"tensor {t['name']!r} has more than three non-unit dimensions {list(t['shape'])}")
        for msg in dict.fromkeys(bad):
            problems.append((idx, msg))
        if bad and first_bad is None:
            first_bad = idx
    return PrecheckResult(tuple(str(o["op_name"]) for o in ops), tuple(problems), first_bad)


# --------------------------------------------------------------------------- compiler


@dataclass(frozen=True)
class CompileResult:
    """The compiler's report, parsed.

    Attributes:
        compiled_model: path of ``<name>_edgetpu.tflite``.
        log_file: path of ``<name>_edgetpu.log`` (None if it wrote none).
        compiler_version: e.g. ``"16.0.384591198"``.
        subgraphs: number of Edge TPU subgraphs.
        total_ops: operations in the model.
        ops_on_tpu, ops_on_cpu: operations per side.
        on_chip_memory, off_chip_memory: as the compiler prints them (``"24.25KiB"``).
        operators: ``(op, count, status)`` rows of the ``-s`` table.
        output: everything it printed.
    """

    compiled_model: Path
    log_file: Path | None
    compiler_version: str | None
    subgraphs: int | None
    total_ops: int | None
    ops_on_tpu: int | None
    ops_on_cpu: int | None
    on_chip_memory: str | None
    off_chip_memory: str | None
    operators: tuple[tuple[str, int, str], ...] = field(default_factory=tuple)
    output: str = ""

    @property
    def fully_mapped(self) -> bool:
        """True when every op runs on the Edge TPU."""
        return self.ops_on_cpu == 0 and self.subgraphs == 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the conversion report."""
        return {
            "compiled_model": self.compiled_model.name,
            "log_file": self.log_file.name if self.log_file else None,
            "compiler_version": self.compiler_version,
            "subgraphs": self.subgraphs,
            "total_ops": self.total_ops,
            "ops_on_tpu": self.ops_on_tpu,
            "ops_on_cpu": self.ops_on_cpu,
            "on_chip_memory": self.on_chip_memory,
            "off_chip_memory": self.off_chip_memory,
            "fully_mapped": self.fully_mapped,
            "operators": [{"op": o, "count": c, "status": s} for o, c, s in self.operators],
        }


def _grab(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _int(s: str | None) -> int | None:
    return int(s) if s is not None and s.isdigit() else None


def parse_compiler_output(text: str) -> dict[str, Any]:
    """Parse what ``edgetpu_compiler -s`` prints.

    >>> r = parse_compiler_output('''Edge TPU Compiler version 16.0.384591198
    ... Number of Edge TPU subgraphs: 1
    ... Total number of operations: 3
    ... Operator                       Count      Status
    ...
    ... CONV_2D                        2          Mapped to Edge TPU
    ... SOFTMAX                        1          Mapped to Edge TPU
    ... ''')
    >>> r["version"], r["subgraphs"], r["total_ops"], r["ops_on_tpu"], r["ops_on_cpu"]
    ('16.0.384591198', 1, 3, 3, 0)

    Returns:
        A dict with ``version``, ``subgraphs``, ``total_ops``, ``ops_on_tpu``,
        ``ops_on_cpu``, ``on_chip_memory``, ``off_chip_memory``, ``output_model``,
        ``log_file`` and ``operators`` (list of ``(op, count, status)``); values
        the output lacks are None.
    """
    rows: list[tuple[str, int, str]] = []
    table = re.search(r"^Operator\s+Count\s+Status\s*$(.*)", text, re.MULTILINE | re.DOTALL)
    if table:
        for line in table.group(1).splitlines():
            m = re.match(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line)
            if m:
                rows.append((m.group(1), int(m.group(2)), m.group(3)))
            elif line.strip() and rows:
                break
    total = _int(_grab(r"^Total number of operations:\s*(\d+)", text))
    on_tpu = _int(_grab(r"^Number of operations that will run on Edge TPU:\s*(\d+)", text))
    on_cpu = _int(_grab(r"^Number of operations that will run on CPU:\s*(\d+)", text))
    if rows:
        mapped = sum(c for _, c, s in rows if s == "Mapped to Edge TPU")
        on_tpu = mapped if on_tpu is None else on_tpu
        on_cpu = sum(c for _, c, _s in rows) - mapped if on_cpu is None else on_cpu
    elif total is not None and on_tpu is None and on_cpu is None:
        on_tpu, on_cpu = total, 0  # the compiler prints the split only when something stays on the CPU
    return {
        "version": _grab(r"Edge TPU Compiler version\s+(\S+)", text),
        "subgraphs": _int(_grab(r"^Number of Edge TPU subgraphs:\s*(\d+)", text)),
        "total_ops": total,
        "ops_on_tpu": on_tpu,
        "ops_on_cpu": on_cpu,
        "on_chip_memory": _grab(r"^On-chip memory used for caching model parameters:\s*(.+)$", text),
        "off_chip_memory": _grab(r"^Off-chip memory used for streaming uncached model parameters:\s*(.+)$", text),
        "output_model": _grab(r"^Output model:\s*(.+)$", text),
        "log_file": _grab(r"^Operation log:\s*(.+)$", text),
        "operators": rows,
    }


def find_compiler(compiler: str | os.PathLike[str] | None = None) -> str:
    """Locate ``edgetpu_compiler`` (an explicit path, else on PATH).

    Raises:
        CompilerNotFoundError: one line naming the compiler, its Debian package
            and the platform it runs on.
    """
    if compiler is not None:
        p = Path(compiler)
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        found = shutil.which(os.fspath(compiler))
        if found:
            return found
        raise CompilerNotFoundError(f"--compiler {compiler}: not an executable file. " + _INSTALL_HINT)
    found = shutil.which(COMPILER)
    if found is None:
        where = f" (this machine is {platform.system()} {platform.machine()})"
        raise CompilerNotFoundError(_INSTALL_HINT + where)
    return found


def compile_model(
    model: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    compiler: str | os.PathLike[str] | None = None,
    min_runtime_version: int | None = None,
    timeout: float = 600.0,
) -> CompileResult:
    """Compile a fully-int8 ``.tflite`` for the Edge TPU.

    The compiler writes into a temporary directory beside the destination; its
    ``<name>_edgetpu.tflite`` and ``.log`` are then renamed into ``out_dir``, so a
    failed or interrupted run leaves no partial model under the final name.

    Args:
        model: the CPU model.
        out_dir: where ``<name>_edgetpu.tflite`` goes (default: beside ``model``).
        compiler: path of ``edgetpu_compiler`` (default: found on PATH).
        min_runtime_version: passed as ``-m``.
        timeout: seconds before the compiler is stopped.

    Returns:
        The parsed :class:`CompileResult`.

    Raises:
        CompilerNotFoundError: no compiler.
        CompilationError: the compiler failed (its output is on the exception).
        ConvertError: the model file does not exist.
    """
    src = Path(model)
    if not src.is_file():
        raise ConvertError(f"{src}: no such model file")
    exe = find_compiler(compiler)
    dest = Path(out_dir) if out_dir is not None else src.parent
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-edgetpu.", dir=dest) as tmp:
        cmd = [exe, "-s", "-o", tmp]
        if min_runtime_version is not None:
            cmd += ["-m", str(int(min_runtime_version))]
        cmd.append(str(src))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise CompilationError(f"{COMPILER} did not finish in {timeout:.0f} s", str(e.output or "")) from e
        except OSError as e:
            raise CompilerNotFoundError(f"{exe}: cannot run ({e}). " + _INSTALL_HINT) from e
        output = (proc.stdout or "") + (proc.stderr or "")
        name = src.stem + "_edgetpu"
        produced = Path(tmp) / f"{name}.tflite"
        if proc.returncode != 0 or not produced.is_file():
            why = f"exit code {proc.returncode}" if proc.returncode != 0 else f"no {produced.name} written"
            raise CompilationError(f"{COMPILER} failed on {src.name} ({why})", output, proc.returncode)
        final = dest / produced.name
        os.replace(produced, final)
        log_src = Path(tmp) / f"{name}.log"
        log_file = None
        if log_src.is_file():
            log_file = dest / log_src.name
            os.replace(log_src, log_file)
    info = parse_compiler_output(output)
    return CompileResult(
        compiled_model=final,
        log_file=log_file,
        compiler_version=info["version"],
        subgraphs=info["subgraphs"],
        total_ops=info["total_ops"],
        ops_on_tpu=info["ops_on_tpu"],
        ops_on_cpu=info["ops_on_cpu"],
        on_chip_memory=info["on_chip_memory"],
        off_chip_memory=info["off_chip_memory"],
        operators=tuple(info["operators"]),
        output=output,
    )
