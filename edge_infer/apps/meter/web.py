"""The meter on ``edge-infer serve --meter meter.toml``: a Flask blueprint with JSON and a page.

- ``GET /v1/meter``: the meter (name, unit, ROIs, reference size), the last reading
  (:meth:`Reading.to_dict`) and the published history (``?limit=``, default 500).
- ``GET /v1/meter/history.csv``: every reading as CSV.
- ``GET /v1/meter/frame.jpg`` (the last aligned frame), ``/v1/meter/reference.jpg``,
  ``/v1/meter/crop/<i>.png`` (the last reading's digit window ``i``).
- ``PUT /v1/meter/rois``: ``{"rois": [[x, y, w, h], ...]}`` (or ``{"display": [...]}``) - checked
  against the reference frame, written to the config file atomically, used from the next reading.
- ``GET /meter``: the page - the last frame with the ROIs, each digit's crop and reading, the
  history as a plot, and the ROI editor (drag a box to move it, its corner to resize it).

The serve app's API key (if any) covers these routes too. Importing this module imports no Flask.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import numpy as np

from ...errors import ClientError, ConfigError
from ..serve.policy import page_policy

__all__ = ["create_blueprint", "register"]

log = logging.getLogger(__name__)


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def create_blueprint(service: Any) -> Any:
    """The blueprint for one running :class:`~edge_infer.apps.meter.service.MeterService`.

    Args:
        service: The meter service (its ``reader`` and ``cfg`` are read; ROI edits update them).

    Returns:
        A ``flask.Blueprint`` (register it on the serve app).
    """
    from flask import Blueprint, Response, jsonify, request

    bp = Blueprint("meter", __name__)
    page = (resources.files("edge_infer.apps.meter") / "web" / "meter.html").read_text(encoding="utf-8")
    policy = page_policy(page, img_src="'self'")

    def reader() -> Any:
        r = service.reader
        if r is None:
            raise ClientError(503, "the meter reader is not running")
        return r

    def describe(r: Any) -> dict[str, Any]:
        cfg = r.config
        h, w = r.reference.shape[:2]
        return {
            "name": cfg.name,
            "unit": cfg.unit,
            "device_class": cfg.device_class,
            "kind": cfg.kind,
            "digits": cfg.digits,
            "decimals": cfg.decimals,
            "rois": [list(b) for b in cfg.rois],
            "display": list(cfg.display) if cfg.display else None,
            "reference": {"width": w, "height": h},
            "config": str(cfg.path) if cfg.path else None,
        }

    @bp.get("/v1/meter")
    def meter_json() -> Any:
        r = reader()
        limit = request.args.get("limit", "500")
        if not limit.isdigit() or not 1 <= int(limit) <= 100_000:
            raise ClientError(400, f"limit must be a whole number from 1 to 100000, got {limit!r}")
        last = r.last
        history = r.history.recent(int(limit), published_only=True)
        return jsonify(
            meter=describe(r),
            reading=last.to_dict() if last is not None else None,
            history=[{"time": h["time"], "value": h["value"]} for h in history],
        )

    @bp.get("/v1/meter/history.csv")
    def history_csv() -> Any:
        return Response(reader().history.to_csv(), mimetype="text/csv")

    @bp.get("/v1/meter/frame.jpg")
    def frame() -> Any:
        r = reader()
        img = r.last_frame if r.last_frame is not None else r.reference
        return Response(_jpeg(img), mimetype="image/jpeg", headers={"Cache-Control": "no-store"})

    @bp.get("/v1/meter/reference.jpg")
    def reference() -> Any:
        return Response(_jpeg(reader().reference, 92), mimetype="image/jpeg", headers={"Cache-Control": "no-store"})

    @bp.get("/v1/meter/crop/<int:i>.png")
    def crop(i: int) -> Any:
        import cv2

        crops = list(reader().last_crops)
        if not 0 <= i < len(crops):
            raise ClientError(404, f"no crop {i}: the last reading has {len(crops)}")
        ok, buf = cv2.imencode(".png", crops[i])
        return Response(buf.tobytes(), mimetype="image/png", headers={"Cache-Control": "no-store"})

    @bp.put("/v1/meter/rois")
    def put_rois() -> Any:
        r = reader()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not ({"rois", "display"} & set(body)):
            raise ClientError(400, 'send JSON {"rois": [[x, y, w, h], ...]} or {"display": [x, y, w, h]}')
        try:
            r.set_rois(body.get("rois"), display=body.get("display"), save=True)
        except ConfigError as e:
            raise ClientError(400, str(e)) from None
        service.cfg = r.config
        log.info("ROIs of %s changed from the page and saved to %s", r.config.name, r.config.path)
        return jsonify(meter=describe(r))

    @bp.get("/meter")
    def meter_page() -> Any:
        return Response(page, mimetype="text/html", headers={"Content-Security-Policy": policy})

    return bp


def register(app: Any, config: str, recognizer: Any) -> Any:
    """Starts the meter of ``config`` on ``recognizer`` and adds its routes to a serve app.

    The meter loop runs in a daemon thread; it is closed (MQTT ``offline``) when the process exits.

    Returns:
        The running :class:`~edge_infer.apps.meter.service.MeterService`.
    """
    import atexit

    from .config import load_config
    from .service import MeterService

    service = MeterService(load_config(config), recognizer=recognizer).start()
    atexit.register(service.close)
    app.register_blueprint(create_blueprint(service))
    return service
