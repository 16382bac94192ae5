"""The meter reader: a camera on a water, gas or electricity meter, plausible readings to Home Assistant.

``edge-infer meter --config meter.toml`` (the ``[meter]`` extra) reads the meter every ``interval``
seconds and publishes over MQTT with Home Assistant discovery; ``edge-infer serve --meter
meter.toml`` adds ``/v1/meter`` and a page with the frame, the ROIs, the digit crops and the history.
From code::

    from edge_infer.apps.meter import MeterReader, load_config
    reader = MeterReader(load_config("meter.toml"))
    reading = reader.read(frame)     # Reading(value, digits, confidence, status, raw, ...)

Modules: :mod:`.config` (TOML, checked), :mod:`.configfile` (writing it back), :mod:`.align` (camera moves), :mod:`.plausibility` (rolling drum,
rate, confusable digits), :mod:`.reader` (MeterReader), :mod:`.history` (SQLite), :mod:`.crops`
(crops for retraining), :mod:`.mqtt` (MQTT and discovery), :mod:`.service` (the loop),
:mod:`.cli` (the command), :mod:`.web` (the Flask blueprint). See docs/meter.md.
"""

from __future__ import annotations

from .config import MeterConfig, load_config
from .configfile import save_config
from .plausibility import STATUSES
from .reader import MeterReader, Reading

__all__ = ["MeterConfig", "MeterReader", "Reading", "STATUSES", "load_config", "save_config"]
