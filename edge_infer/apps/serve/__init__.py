"""``edge-infer serve``: the HTTP service (Flask app, waitress runner, MJPEG stream, uploads)."""
