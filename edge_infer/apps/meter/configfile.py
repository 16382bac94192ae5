"""Writing the meter config back: TOML text and atomic file writes (the page's ROI editor uses them).

A file is written under a temporary name in its folder, flushed to disk and renamed over the old
one, so a reader (or a power cut) sees the old or the new content, never half of it; a config is
read back and checked before it is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError
from .config import MeterConfig, parse_config, toml_module

__all__ = ["atomic_write", "save_config", "to_dict", "to_toml"]

log = logging.getLogger(__name__)


def to_dict(cfg: MeterConfig) -> dict[str, Any]:
    """The config as the dict a TOML file holds (paths relative to the file's folder when inside it)."""
    base = cfg.path.parent if cfg.path else None

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        if base is not None:
            try:
                return str(p.relative_to(base))
            except ValueError:
                pass
        return str(p)

    d: dict[str, Any] = {"name": cfg.name, "source": cfg.source, "reference": rel(cfg.reference)}
    if cfg.display:
        d["display"] = list(cfg.display)
        d["digits"] = cfg.digits
    else:
        d["rois"] = [list(r) for r in cfg.rois]
    d.update(kind=cfg.kind, decimals=cfg.decimals, unit=cfg.unit, device_class=cfg.device_class, interval=cfg.interval)
    if cfg.model:
        d["model"] = rel(cfg.model)
    if cfg.history:
        d["history"] = rel(cfg.history)
    d["plausibility"] = dataclasses.asdict(cfg.plausibility)
    d["plausibility"]["confusable"] = list(cfg.plausibility.confusable)
    d["align"] = dataclasses.asdict(cfg.align)
    if cfg.mqtt:
        d["mqtt"] = dataclasses.asdict(cfg.mqtt)
    if cfg.crops.dir:
        d["crops"] = {"dir": rel(cfg.crops.dir), "max_mb": cfg.crops.max_mb}
    return d


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, (list, tuple)) for x in v):
            return "[\n" + "".join(f"  {_toml_value(x)},\n" for x in v) + "]"
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """A dict of scalars, lists and one level of tables as TOML text.

    >>> print(to_toml({"name": "w", "rois": [[1, 2, 3, 4]], "mqtt": {"port": 1883}}))
    name = "w"
    rois = [
      [1, 2, 3, 4],
    ]
    <BLANKLINE>
    [mqtt]
    port = 1883
    <BLANKLINE>
    """
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes a file so that readers see the old or the new content, never half of it.

    A temporary file in the same folder is written, flushed to disk and renamed over ``path``.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if p.exists():
            os.chmod(tmp, p.stat().st_mode & 0o777)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_config(cfg: MeterConfig, path: str | os.PathLike[str] | None = None) -> Path:
    """Writes the config as TOML, atomically (checked by reading it back first).

    Args:
        cfg: The config.
        path: Where (default: the file it was read from).

    Returns:
        The path written.

    Raises:
        ConfigError: No path, or the config does not survive a round trip.
    """
    target = Path(path) if path is not None else cfg.path
    if target is None:
        raise ConfigError("save_config needs a path: this config was not read from a file")
    target = target.resolve()
    cfg = dataclasses.replace(cfg, path=target)
    text = to_toml(to_dict(cfg))
    parse_config(toml_module().loads(text), base=target.parent, path=target)  # what we write must read back
    atomic_write(target, text.encode("utf-8"))
    log.info("wrote %s", target)
    return target
