"""The meter reader's configuration: a TOML file, checked in full when read, written atomically.

Example (``meter.toml``; paths are relative to the file)::

    name = "water"
    source = "picamera"            # anything `edge-infer camera --source` takes
    reference = "reference.png"    # the frame the ROIs are drawn on (saved from the camera when missing)
    rois = [[212, 140, 38, 58], [256, 140, 38, 58], [300, 140, 38, 58], [344, 140, 38, 58]]
    # display = [200, 130, 300, 80]  # instead of rois: one display whose digits are found each time
    kind = "drum"                  # counter drums (digits roll) or "lcd"
    decimals = 1                   # digits right of the decimal point
    unit = "m³"
    device_class = "water"         # water, gas or energy (Home Assistant)
    interval = 60                  # seconds between readings

    [plausibility]
    max_rate = 5.0                 # most the meter can count per hour, in `unit`; 0 = no limit
    allow_decrease = false
    confirm = 2                    # readings that confirm a held jump (or the very first value)
    confusable = ["09", "17", "68"]

    [mqtt]
    host = "localhost"

Writing it back (the page's ROI editor) is :mod:`.configfile`. Every key is checked: an unknown key, a wrong type, an ROI outside the reference frame or an
unknown unit is a :class:`~edge_infer.errors.ConfigError` whose message names the key, the value
and the fix (the CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError

__all__ = [
    "AlignConfig",
    "CropsConfig",
    "DEVICE_UNITS",
    "MeterConfig",
    "MqttConfig",
    "PlausibilityConfig",
    "check_rois",
    "load_config",
    "toml_module",
    "parse_config",
]

log = logging.getLogger(__name__)

#: Home Assistant device classes and the units it accepts for each (state_class total_increasing).
DEVICE_UNITS: dict[str, tuple[str, ...]] = {
    "water": ("m³", "L", "ft³", "gal", "CCF"),
    "gas": ("m³", "ft³", "CCF"),
    "energy": ("Wh", "kWh", "MWh", "GJ"),
}
_UNIT_ALIASES = {"m3": "m³", "ft3": "ft³", "l": "L", "kwh": "kWh", "wh": "Wh", "mwh": "MWh"}

Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class PlausibilityConfig:
    """Rules a reading must pass before it is published (see :mod:`edge_infer.apps.meter.plausibility`).

    Attributes:
        max_rate: The most the meter can count per hour, in the config's unit; 0 for no limit
            (not advised: a misread digit then reaches Home Assistant unless it is a confusable one).
        allow_decrease: Publish readings lower than the last one (a meter that counts both ways).
        min_score: A digit read with a lower probability counts as unreadable.
        max_unknown: At most this many unreadable digits are filled in from the last value.
        confirm: Readings that must agree before a held jump (or a first value) is published.
        confusable: Digit pairs a jump in one place is held for (``"09"`` = 0 and 9).
    """

    max_rate: float = 0.0
    allow_decrease: bool = False
    min_score: float = 0.6
    max_unknown: int = 2
    confirm: int = 2
    confusable: tuple[str, ...] = ("09", "17", "68")


@dataclass(frozen=True)
class AlignConfig:
    """Undoing small camera moves against the reference frame (see :mod:`edge_infer.apps.meter.align`).

    Attributes:
        enabled: Align every frame (off for a rigid mount or a screen grab).
        max_shift: Largest shift accepted, in reference pixels.
        max_angle: Largest rotation accepted, in degrees.
        min_correlation: Least ECC correlation of an aligned frame (0-1); below it the frame is not read.
    """

    enabled: bool = True
    max_shift: float = 25.0
    max_angle: float = 5.0
    min_correlation: float = 0.6


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker and Home Assistant discovery.

    Attributes:
        host, port: The broker.
        topic: Base topic; state goes to ``{topic}/state``, availability to ``{topic}/availability``.
        discovery_prefix: Home Assistant's discovery prefix; empty for no discovery message.
        username: Broker user, if any; the password is read from the environment
            variable named by ``password_env``.
        password_env: Environment variable holding the broker password.
        client_id: MQTT client id (default ``edge-infer-meter-<slug>``).
        buffer: Readings kept while the broker is away (oldest dropped beyond it).
    """

    host: str = "localhost"
    port: int = 1883
    topic: str = ""
    discovery_prefix: str = "homeassistant"
    username: str = ""
    password_env: str = "EDGE_INFER_MQTT_PASSWORD"
    client_id: str = ""
    buffer: int = 10_000


@dataclass(frozen=True)
class CropsConfig:
    """Where the digit crops of uncertain or rejected readings are kept for retraining.

    Attributes:
        dir: Folder (crops go to ``dir/unlabelled``, labelled ones to ``dir/0`` .. ``dir/9`` and ``dir/n``).
        max_mb: Disk the crops may use; the oldest are deleted beyond it.
    """

    dir: Path | None = None
    max_mb: float = 50.0


@dataclass(frozen=True)
class MeterConfig:
    """One meter: where to look, how to read it, where the readings go.

    Attributes:
        name: What the meter is called (Home Assistant's sensor name).
        source: A camera index, ``picamera``, a video, an image folder or ``sample``.
        reference: The reference frame the ROIs are drawn on.
        rois: Digit windows ``(x, y, w, h)`` on the reference, left to right.
        display: Instead of ``rois``: one display ``(x, y, w, h)`` whose digits are found each time.
        digits: How many digits the meter shows (``len(rois)``, or given with ``display``).
        kind: ``"drum"`` (counter drums: a digit caught turning may be filled in from the last
            value) or ``"lcd"`` (digits change at once: an unreadable digit makes the reading uncertain).
        decimals: Digits right of the decimal point.
        unit: Unit of the reading (one Home Assistant accepts for ``device_class``).
        device_class: ``water``, ``gas`` or ``energy``.
        interval: Seconds between readings.
        model: A ``.tflite`` model (e.g. one fine-tuned on this meter); None for the shipped one.
        history: The SQLite history file (the last good value survives a restart through it).
        path: The file this config was read from (None when built in code).
    """

    name: str
    source: str
    reference: Path
    rois: tuple[Roi, ...] = ()
    display: Roi | None = None
    digits: int = 0
    kind: str = "drum"
    decimals: int = 0
    unit: str = "m³"
    device_class: str = "water"
    interval: float = 60.0
    model: Path | None = None
    history: Path | None = None
    plausibility: PlausibilityConfig = field(default_factory=PlausibilityConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    mqtt: MqttConfig | None = None
    crops: CropsConfig = field(default_factory=CropsConfig)
    path: Path | None = None

    @property
    def slug(self) -> str:
        """The name as an id: lower case, ``[a-z0-9_]``."""
        s = "".join(c if c.isalnum() else "_" for c in self.name.lower()).strip("_")
        return s or "meter"


# --------------------------------------------------------------------------- reading


def toml_module() -> Any:
    """``tomllib`` (Python 3.11+) or ``tomli`` (the [meter] extra brings it to 3.9 and 3.10).

    Imported on use, so that ``edge-infer`` itself starts without it.

    Raises:
        ConfigError: Neither is importable.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - 3.9/3.10
        import tomli

        return tomli
    except ImportError:  # pragma: no cover
        raise ConfigError("reading TOML on Python < 3.11 needs tomli: pip install 'edge-infer[meter]'") from None


def load_config(path: str | os.PathLike[str]) -> MeterConfig:
    """Reads and checks a meter config file.

    Args:
        path: The TOML file.

    Returns:
        The config, paths resolved against the file's folder.

    Raises:
        ConfigError: The file is missing, not TOML, or a value is wrong (the message names it).
    """
    p = Path(path)
    tomllib = toml_module()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file (see docs/meter.md for an example)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read it: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_config(data, base=p.resolve().parent, path=p.resolve())


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(allowed))}")


def _num(
    data: Mapping[str, Any],
    key: str,
    default: float,
    where: str,
    *,
    lo: float,
    hi: float | None = None,
    integer: bool = False,
) -> Any:
    v = data.get(key, default)
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or v < lo or (hi is not None and v > hi):
        rng = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{where}{key} = {v!r}: must be {kind} {rng}")
    return int(v) if integer else float(v)


def _str(data: Mapping[str, Any], key: str, default: str | None, where: str) -> str:
    v = data.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(f"{where}{key} = {v!r}: must be a string" if key in data else f"{where}{key} is missing")
    return v


def _bool(data: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    v = data.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{where}{key} = {v!r}: must be true or false")
    return v


def _roi(v: Any, what: str) -> Roi:
    if (
        not isinstance(v, (list, tuple))
        or len(v) != 4
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    ):
        raise ConfigError(f"{what} = {v!r}: must be [x, y, w, h] in whole pixels")
    x, y, w, h = v
    if x < 0 or y < 0 or w < 4 or h < 4:
        raise ConfigError(f"{what} = {list(v)}: x and y must be >= 0 and w, h >= 4 pixels")
    return (x, y, w, h)


def _path(base: Path | None, v: str) -> Path:
    p = Path(v).expanduser()
    return p if p.is_absolute() or base is None else base / p


def parse_config(data: Mapping[str, Any], *, base: Path | None = None, path: Path | None = None) -> MeterConfig:
    """Checks a config read from TOML (a dict) and builds the :class:`MeterConfig`.

    Args:
        data: The TOML document as a dict.
        base: Folder relative paths are resolved against (None: as given).
        path: The file it came from, for messages and saving.

    Raises:
        ConfigError: A missing or wrong value (the message names the key and the fix).
    """
    where = f"{path}: " if path else ""
    top = {
        "name",
        "source",
        "reference",
        "rois",
        "display",
        "digits",
        "kind",
        "decimals",
        "unit",
        "device_class",
        "interval",
        "model",
        "history",
        "plausibility",
        "align",
        "mqtt",
        "crops",
    }
    _check_keys(data, top, f"{path or 'config'}")
    name = _str(data, "name", "meter", where).strip()
    if not name:
        raise ConfigError(f'{where}name is empty; give the meter a name, e.g. name = "water"')
    source = data.get("source", "0")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)
    if not isinstance(source, str) or not source:
        raise ConfigError(f"{where}source = {source!r}: must be a camera index, picamera, a video or a folder")
    reference = _path(base, _str(data, "reference", "reference.png", where))
    rois_raw = data.get("rois")
    display_raw = data.get("display")
    if rois_raw is None and display_raw is None:
        raise ConfigError(
            f"{where}no ROI: give rois = [[x, y, w, h], ...] (one per digit, left to right) or display = [x, y, w, h]"
        )
    if rois_raw is not None and display_raw is not None:
        raise ConfigError(f"{where}give rois or display, not both")
    rois: tuple[Roi, ...] = ()
    display = None
    if rois_raw is not None:
        if not isinstance(rois_raw, list) or not rois_raw:
            raise ConfigError(f"{where}rois = {rois_raw!r}: must be a non-empty list of [x, y, w, h]")
        if len(rois_raw) > 12:
            raise ConfigError(f"{where}rois: {len(rois_raw)} digits; at most 12 are supported")
        rois = tuple(_roi(r, f"{where}rois[{i}]") for i, r in enumerate(rois_raw))
        digits = len(rois)
        if "digits" in data and data["digits"] != digits:
            raise ConfigError(f"{where}digits = {data['digits']!r} but rois has {digits}; drop digits or fix it")
    else:
        display = _roi(display_raw, f"{where}display")
        digits = _num(data, "digits", 0, where, lo=1, hi=12, integer=True) if "digits" in data else 0
        if not digits:
            raise ConfigError(f"{where}display needs digits = N (how many digits the meter shows)")
    decimals = _num(data, "decimals", 0, where, lo=0, hi=digits, integer=True)
    kind = _str(data, "kind", "drum", where)
    if kind not in ("drum", "lcd"):
        raise ConfigError(f'{where}kind = {kind!r}: must be "drum" (counter drums) or "lcd"')
    device_class = _str(data, "device_class", "water", where)
    if device_class not in DEVICE_UNITS:
        raise ConfigError(f"{where}device_class = {device_class!r}: must be one of {', '.join(DEVICE_UNITS)}")
    unit = _str(data, "unit", DEVICE_UNITS[device_class][0], where)
    unit = _UNIT_ALIASES.get(unit.lower(), unit) if unit.lower() in _UNIT_ALIASES else unit
    if unit not in DEVICE_UNITS[device_class]:
        raise ConfigError(
            f"{where}unit = {unit!r} is not a {device_class} unit Home Assistant knows; "
            f"use one of {', '.join(DEVICE_UNITS[device_class])}"
        )
    interval = _num(data, "interval", 60.0, where, lo=0.0, hi=86400.0)
    model = _path(base, _str(data, "model", "", where)) if data.get("model") else None
    history = _path(base, _str(data, "history", "", where)) if data.get("history") else None
    if history is None and base is not None:
        history = base / f"{''.join(c if c.isalnum() else '_' for c in name.lower())}-history.sqlite"

    pd = data.get("plausibility", {})
    if not isinstance(pd, dict):
        raise ConfigError(f"{where}[plausibility] must be a table")
    _check_keys(pd, {f.name for f in dataclasses.fields(PlausibilityConfig)}, f"{where}[plausibility]")
    pw = f"{where}plausibility."
    conf = pd.get("confusable", ["09", "17", "68"])
    if not isinstance(conf, list) or not all(
        isinstance(c, str) and len(c) == 2 and c.isdigit() and c[0] != c[1] for c in conf
    ):
        raise ConfigError(f'{pw}confusable = {conf!r}: must be a list of digit pairs like ["09", "17"]')
    plaus = PlausibilityConfig(
        max_rate=_num(pd, "max_rate", 0.0, pw, lo=0.0),
        allow_decrease=_bool(pd, "allow_decrease", False, pw),
        min_score=_num(pd, "min_score", 0.6, pw, lo=0.0, hi=1.0),
        max_unknown=_num(pd, "max_unknown", min(2, digits - 1), pw, lo=0, hi=min(4, digits - 1), integer=True),
        confirm=_num(pd, "confirm", 2, pw, lo=1, hi=100, integer=True),
        confusable=tuple(conf),
    )

    ad = data.get("align", {})
    if not isinstance(ad, dict):
        raise ConfigError(f"{where}[align] must be a table")
    _check_keys(ad, {f.name for f in dataclasses.fields(AlignConfig)}, f"{where}[align]")
    aw = f"{where}align."
    align = AlignConfig(
        enabled=_bool(ad, "enabled", True, aw),
        max_shift=_num(ad, "max_shift", 25.0, aw, lo=0.0),
        max_angle=_num(ad, "max_angle", 5.0, aw, lo=0.0, hi=45.0),
        min_correlation=_num(ad, "min_correlation", 0.6, aw, lo=0.0, hi=1.0),
    )

    mqtt = None
    if "mqtt" in data:
        md = data["mqtt"]
        if not isinstance(md, dict):
            raise ConfigError(f"{where}[mqtt] must be a table")
        _check_keys(md, {f.name for f in dataclasses.fields(MqttConfig)}, f"{where}[mqtt]")
        mw = f"{where}mqtt."
        slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "meter"
        mqtt = MqttConfig(
            host=_str(md, "host", "localhost", mw),
            port=_num(md, "port", 1883, mw, lo=1, hi=65535, integer=True),
            topic=_str(md, "topic", f"edge-infer/meter/{slug}", mw).rstrip("/") or f"edge-infer/meter/{slug}",
            discovery_prefix=_str(md, "discovery_prefix", "homeassistant", mw).rstrip("/"),
            username=_str(md, "username", "", mw),
            password_env=_str(md, "password_env", "EDGE_INFER_MQTT_PASSWORD", mw),
            client_id=_str(md, "client_id", f"edge-infer-meter-{slug}", mw) or f"edge-infer-meter-{slug}",
            buffer=_num(md, "buffer", 10_000, mw, lo=1, hi=10_000_000, integer=True),
        )

    cd = data.get("crops", {})
    if not isinstance(cd, dict):
        raise ConfigError(f"{where}[crops] must be a table")
    _check_keys(cd, {"dir", "max_mb"}, f"{where}[crops]")
    crops = CropsConfig(
        dir=_path(base, _str(cd, "dir", "", f"{where}crops.")) if cd.get("dir") else None,
        max_mb=_num(cd, "max_mb", 50.0, f"{where}crops.", lo=0.1),
    )
    return MeterConfig(
        name=name,
        source=source,
        reference=reference,
        rois=rois,
        display=display,
        digits=digits,
        kind=kind,
        decimals=decimals,
        unit=unit,
        device_class=device_class,
        interval=interval,
        model=model,
        history=history,
        plausibility=plaus,
        align=align,
        mqtt=mqtt,
        crops=crops,
        path=path,
    )


def check_rois(cfg: MeterConfig, frame_shape: tuple[int, ...]) -> None:
    """Raises :class:`ConfigError` when an ROI is not inside a frame of ``frame_shape`` (h, w[, c])."""
    h, w = frame_shape[:2]
    boxes = [("display", cfg.display)] if cfg.display else [(f"rois[{i}]", r) for i, r in enumerate(cfg.rois)]
    for what, (x, y, bw, bh) in boxes:
        if x + bw > w or y + bh > h:
            where = f"{cfg.path}: " if cfg.path else ""
            raise ConfigError(
                f"{where}{what} = [{x}, {y}, {bw}, {bh}] reaches outside the {w}x{h} reference frame; "
                "redraw it on the meter page or fix the numbers"
            )
