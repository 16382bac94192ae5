"""convert.atomic: an artifact is complete under its final name or not there at all."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from convert.atomic import atomic_dir, atomic_open, write_bytes, write_json

ROOT = Path(__file__).resolve().parent.parent

# A writer that puts 3 MiB into an atomic file, says so, then blocks reading its stdin
# (which the test never writes): the kill always lands mid-write, however busy the machine.
WRITER = """
import sys
from convert.atomic import atomic_open
with atomic_open(sys.argv[1], "wb") as f:
    for i in range(3):
        f.write(bytes([i]) * (1 << 20))
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()
    f.write(b"never")
print("done", flush=True)
"""


def _kill_mid_write(target: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = [p for p in target.parent.iterdir() if p.name.startswith(f".tmp-{target.name}.")]
        assert partial and partial[0].stat().st_size > 0, "the writer should be part-way through a temp file"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_killed_writer_leaves_no_partial_file(tmp_path):
    target = tmp_path / "big.tflite"
    _kill_mid_write(target)
    assert not target.exists()


def test_killed_writer_keeps_the_previous_version(tmp_path):
    target = tmp_path / "model.tflite"
    write_bytes(target, b"previous complete model")
    _kill_mid_write(target)
    assert target.read_bytes() == b"previous complete model"


def test_failure_inside_block_removes_temp(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("{")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_json_and_dir(tmp_path):
    write_json(tmp_path / "a.json", {"k": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"k": [1, 2]}
    with atomic_dir(tmp_path / "report") as d:
        (d / "report.md").write_text("v1")
    with pytest.raises(ValueError), atomic_dir(tmp_path / "report") as d:
        (d / "report.md").write_text("half")
        raise ValueError("interrupted")
    assert (tmp_path / "report" / "report.md").read_text() == "v1"
    with atomic_dir(tmp_path / "report") as d:
        (d / "report.md").write_text("v2")
    assert (tmp_path / "report" / "report.md").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "report"]
