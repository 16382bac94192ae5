"""keep_freed_memory: freed frame-sized blocks are reused, not page-faulted back."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_infer.runtime.sysmem import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent

# A frame loop in miniature: a few MB allocated, touched and freed, 40 times.
_CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from edge_infer.runtime.sysmem import keep_freed_memory, keeps_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    assert keeps_freed_memory() is bool(applied)
    np.ones(1 << 20); np.ones(3 << 20)  # the first blocks of these sizes
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(40):
        frame = np.ones((3 << 20) // 8 + i)
        gray = np.ones((1 << 20) // 8)
        del frame, gray
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    """
)


def _faults(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=120,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_back():
    _, plain = _faults("plain", EDGE_INFER_MALLOC="")
    applied, kept = _faults("keep", EDGE_INFER_MALLOC="")
    assert applied == "True"
    assert plain >= 40  # fresh pages for every block, every time (how many per fault is the kernel's choice)
    assert kept < plain / 10


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_the_environment_can_leave_malloc_alone():
    applied, faults = _faults("keep", EDGE_INFER_MALLOC="system")
    assert applied == "False"
    assert faults >= 40


@pytest.mark.parametrize("kw", [{"trim_mb": 0}, {"trim_mb": True}, {"mmap_mb": 33}, {"mmap_mb": 1.5}])
def test_bad_sizes_are_refused(kw):
    with pytest.raises(ValueError, match="mb must be"):
        keep_freed_memory(**kw)
